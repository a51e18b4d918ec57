"""Which documents a question names (issue 33): "Amazon's Q2 2023 10-Q" among twelve filings of three companies.

A chunk's context line (:mod:`rag.chunk_context`) lets BM25, the embedder and the reranker read whose page it is,
but one line among a page's words weighs little against a neighbour's page on the same subject: on twelve quarterly
filings the company was found, the quarter rarely. A person would open the asked filing first. This module does:
each document's identity (its title, cover, period, running lines and file name, as ingest found them) is matched
against the question's words, and the first stage then searches the documents the question names, as if the user
had picked them (``RagPipeline.ask(sources=...)``).

A question word names documents only where it tells them apart and the text agrees:

* it is in the identity of some documents but not all ("Amazon", "Q2", "2023"; "Form" and "10-Q" name none);
* the other documents' own text seldom uses it (at most ``Settings.route_max_outside_share`` of their chunks):
  "Apple" names Apple's filings (0 of the others' chunks), while "United States" on Amazon's cover names nothing
  (7 % of the others' chunks say it);
* its documents' own text does use it (at least ``Settings.route_min_inside_share`` of their chunks): a filing
  speaks of its company (Apple's chunks say "Apple" in 17 %), while a word only a title holds ("I" in "What can I
  do?") is no name;
* each of its documents holds more than one chunk: a one-chunk document's identity is already read with its only
  chunk by BM25, the embedder and the reranker, so naming it adds nothing but the risk of passing over its
  neighbours (a library of titled abstracts, a manual's sections as passages), and naming only the longer ones
  among an article's paragraphs would pass over its short ones;
* numbers name only as years, quarters or forms ("2023", "Q3", "third quarter", "第三季度", "2023Q2", "10-K"), and
  these only narrow what the names chose: other filings speak of 2023 too, so a year is not tested against their
  text. A document's quarter is the one its identity states ("Q3 2023 Form 10-Q"), else the one its text keeps
  naming as its own ("the second quarter of fiscal 2024"), else the calendar quarter of the period its cover
  states; its fiscal year is the one its text names most ("fiscal year 2024"), which "FY2024" prefers to a date.

The documents holding the most of those words, weighted by how few documents carry each (IDF), are the ones asked.
"the latest" / "most recent" / "最新" then keeps, among them, those whose identity states the newest date (never
of a whole collection: "the latest firmware" names no document). Nothing
here knows a company: the names come from the documents. Hand-written: llama-index's auto-retrievers ask an LLM
to write a metadata filter, which the offline default has none of.

The same identities tell the abstention decision (rag.abstain) when a question asks about a quarter no document
of the collection is of (:meth:`DocumentNames.quarters_held`).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.bm25_tokens import tokenize
from rag.types import NamedDocuments

NAMES_FILE = "doc_names.json"
NAMES_VERSION = 9  # in the BM25 manifest: an index whose names another version counted is rebuilt

_ORDINALS = {"first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4}
_QUARTER_WORDS = re.compile(r"\b(first|1st|second|2nd|third|3rd|fourth|4th)\s+(?:fiscal\s+)?quarter\b", re.I)
# "the second quarter of fiscal 2024", "the third quarter of 2023": how a filing names its own quarter in its text
# (a year after "of" leaves out an outlook's "fourth quarter 2022" and a phrase as "the third quarter and").
_QUARTER_OF_YEAR = re.compile(r"\b(first|second|third|fourth)\s+quarter\s+of\s+(?:fiscal\s+)?(?:year\s+)?"
                              r"(?:19|20)\d\d\b", re.I)
# "fiscal 2024", "fiscal year 2023": the fiscal year a filing's text names most is its own (NVIDIA's quarter ended
# October 29, 2023 names fiscal 2024 82 times, fiscal 2023 37)
_FISCAL_IN_TEXT = re.compile(r"\bfiscal\s+(?:year\s+)?((?:19|20)\d\d)\b", re.I)
TEXT_OWN_MIN = 3  # a quarter or fiscal year the text names at least this often...
TEXT_QUARTER_SHARE = 0.6  # ...and in this share of the quarters it names with a year is the document's own
TEXT_FISCAL_YEAR_SHARE = 0.5  # ...or of the fiscal years it names (this year's against last year's: 61-68 %)
FISCAL_FIRST = 0.9  # a fiscal year asked: what a filing dated that year counts, against one of that fiscal year
_QUARTER_ZH = re.compile(r"第?([一二三四1-4])季度")
_ZH_DIGITS = {"一": 1, "二": 2, "三": 3, "四": 4}
_FISCAL_YEAR = re.compile(r"\bFY\s?'?((?:19|20)?\d\d)\b", re.I)  # "FY2023", "FY 23", "FY'23"
# a year and a quarter written as one word, as file names do: "AMCOR_2023Q2_10Q", "FY23Q4", "Q32023"
_GLUED_PERIOD = re.compile(r"(?<=\d)(?=Q[1-4]\b)|(?<=\bQ[1-4])(?=(?:19|20)\d\d\b)", re.I)
_YEAR = re.compile(r"(?:19|20)\d\d")
_LATEST = re.compile(r"\b(?:latest|most\s+recent|newest|last\s+(?:filing|report|quarter|10-[qk]))\b|最新|最近一",
                     re.I)
# "the most recent quarter compared to previous ones" asks for them all.
_EARLIER = re.compile(r"\b(?:previous|prior|earlier|preceding|over\s+time|trends?)\b|之前|以前|上一|历年", re.I)
# a year, a quarter, a filing's form (annual 10-K and 20-F, quarterly 10-Q, current 8-K and 6-K)
_PERIOD_TERM = re.compile(r"(?:fy)?(?:19|20)\d\d|q[1-4]|10[kq]|20f|[68]k")
_FORM = re.compile(r"\b(10-?[KQ]|20-?F|[68]-?K)\b", re.I)  # "10-K", "8-K": one term, as a file name's "10K" is
_QUARTER_TERM = re.compile(r"q[1-4]")
_FORM_TERM = re.compile(r"10[kq]|20f|[68]k")
_PERIOD_ENDED = re.compile(r"\b(?:quarterly\s+period|three\s+months|quarter)\s+ended\s+"
                           r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+(\d{1,2}),?\s+((?:19|20)\d\d)",
                           re.I)
_MONTHS = {m: i for i, m in enumerate(
    "jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)}
_DATE_ISO = re.compile(r"\b((?:19|20)\d\d)-(\d\d)-(\d\d)\b")
_DATE_WORDS = re.compile(r"\b(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+(\d{1,2}),?\s+((?:19|20)\d\d)\b",
                         re.I)
_QUARTER_YEAR = re.compile(r"\bQ([1-4])\s*((?:19|20)\d\d)\b|\b((?:19|20)\d\d)\s*Q([1-4])\b", re.I)
# a quarter with its year as questions ask it: "Q3 2023", "Q3 FY2024", "2023 Q3", "the third quarter of (fiscal)
# 2023", "2023年第三季度"
_ASKED_QUARTER = re.compile(
    r"\bQ([1-4])\s*(?:of\s+)?(?:fiscal\s+(?:year\s+)?|FY\s?)?((?:19|20)\d\d)\b"
    r"|\b(?:FY\s?)?((?:19|20)\d\d)\s*Q([1-4])\b"
    r"|\b(first|second|third|fourth)\s+(?:fiscal\s+)?quarter\s+(?:of\s+)?(?:fiscal\s+(?:year\s+)?|FY\s?)?"
    r"((?:19|20)\d\d)\b"
    r"|((?:19|20)\d\d)\s*(?:财年|年)\s*第?([一二三四1-4])季度", re.I)


def _spelled_periods(text: str) -> str:
    """The text with its spelled-out quarters and fiscal years also written as the tokens identities carry:
    "third quarter" -> q3, "第三季度" -> q3, "FY2023" and "FY23" -> 2023, "2023Q2" -> 2023 q2, "10-K" -> 10k."""
    text = _GLUED_PERIOD.sub(" ", text)
    extra = [f"q{_ORDINALS[m.group(1).lower()]}" for m in _QUARTER_WORDS.finditer(text)]
    extra += [f"q{_ZH_DIGITS.get(m.group(1)) or m.group(1)}" for m in _QUARTER_ZH.finditer(text)]
    extra += [m.group(1).replace("-", "").lower() for m in _FORM.finditer(text)]
    years = [m.group(1) if len(m.group(1)) == 4 else f"20{m.group(1)}" for m in _FISCAL_YEAR.finditer(text)]
    years += _FISCAL_IN_TEXT.findall(text)
    extra += [*years, *(f"fy{year}" for year in years)]  # a fiscal year is a year, and a filing's own (fy2024)
    return f"{text} {' '.join(extra)}" if extra else text


def naming_terms(text: str) -> set[str]:
    """The terms of ``text`` that can name a document: BM25's terms, a number only as a year, and words with a
    digit and a letter ("3M", "q3", "10k")."""
    return {term for term in tokenize(_spelled_periods(text))
            if not term.isdigit() or _YEAR.fullmatch(term)}


def text_own(counts: Counter[str], share: float) -> str | None:
    """What a document's text names as its own period ("the second quarter of fiscal 2024" over and over: q2,
    fy2024), from the count of each it names; None where none stands out."""
    if not counts:
        return None
    term, count = counts.most_common(1)[0]
    return term if count >= TEXT_OWN_MIN and count >= share * counts.total() else None


def asked_quarters(question: str) -> list[tuple[str, str]]:
    """The quarters ``question`` asks about with their year, as identity terms, a fiscal year as one: "Q3 2023"
    -> [("q3", "2023")], "the third quarter of fiscal 2024" -> [("q3", "fy2024")]."""
    asked = []
    for m in _ASKED_QUARTER.finditer(_GLUED_PERIOD.sub(" ", question.replace("_", " "))):  # file names' "_"
        q1, y1, y2, q2, word, y3, y4, zh = m.groups()
        quarter = q1 or q2 or (_ORDINALS[word.lower()] if word else None) or _ZH_DIGITS.get(zh) or zh
        fiscal = "fy" if re.search(r"fiscal|fy|财年", m.group(0), re.I) else ""
        asked.append((f"q{quarter}", f"{fiscal}{y1 or y2 or y3 or y4}"))
    return list(dict.fromkeys(asked))


def identity_terms(identity: str, own_quarter: str | None = None, own_fiscal_year: str | None = None) -> set[str]:
    """An identity's naming terms, and the quarter of the period it covers where it names no quarter itself: a
    file name or running line that says "Q3" wins, then the quarter its text names as its own (``own_quarter``,
    :func:`text_own`: a fiscal quarter is often not the calendar's, and people name a filing by its fiscal
    one), then the calendar quarter of the period the cover states ("For the quarterly period ended June 30,
    2023" -> q2).

    A calendar quarter is the one that holds most of the period's three months, the middle one: ended October 29,
    2023 (August to October) is q3, ended July 29 q2, ended January 28, 2024 q4 of 2023 (its year is added).
    ``own_fiscal_year`` (fy2024) is the fiscal year its text names as its own."""
    terms = naming_terms(identity) | ({own_fiscal_year} if own_fiscal_year else set())
    if own_quarter and not any(_QUARTER_TERM.fullmatch(term) for term in terms):
        terms.add(own_quarter)
    if not any(_QUARTER_TERM.fullmatch(term) for term in terms):
        for month, day, year in _PERIOD_ENDED.findall(identity):
            middle = _MONTHS[month.lower()[:3]] - (int(day) <= 7) - 1  # "ended July 1": June is the last month
            if middle <= 0:  # the year before's November or December
                middle += 12
                terms.add(str(int(year) - 1))
            terms.add(f"q{(middle - 1) // 3 + 1}")
    return terms


def newest_date(text: str) -> str | None:
    """The newest date an identity states (ISO; else a quarter's label, read as its last month): how "the latest"
    orders documents."""
    dates = [f"{y}-{m}-{d}" for y, m, d in _DATE_ISO.findall(text)]
    dates += [f"{y}-{_MONTHS[mon.lower()[:3]]:02d}-{int(d):02d}" for mon, d, y in _DATE_WORDS.findall(text)]
    if not dates:  # a fiscal quarter's label only where no date is written: fiscal and calendar quarters differ
        dates = [f"{y1 or y2}-{3 * int(q1 or q2):02d}-28" for q1, y1, y2, q2 in _QUARTER_YEAR.findall(text)]
    return max(dates) if dates else None


@dataclass(frozen=True)
class TermUse:
    """How the documents whose identity carries a term use it in their own text, and how the others do."""

    docs: tuple[int, ...]  # the documents (indexes into ``DocumentNames.sources``) whose identity carries it
    inside: float  # the share of their chunks whose own text (no context line) uses it
    outside: float  # the share of the other documents' chunks whose own text uses it


class DocumentNames:
    """Each document's identity, chunk count and date, and how the collection's text uses each identity term:
    built with the BM25 index from the same pass over the chunks, kept beside it (rag.lexical)."""

    def __init__(self, sources: Sequence[str], chunks: Sequence[int], dates: Sequence[str | None],
                 terms: dict[str, TermUse], periods: Sequence[Sequence[str]] = (),
                 row_docs: Sequence[int] = ()) -> None:
        self.sources, self.chunks, self.dates, self.terms = list(sources), list(chunks), list(dates), terms
        self.periods = [set(p) for p in periods]  # each document's quarters, years and fiscal years (identity terms)
        self.row_docs = np.asarray(row_docs, dtype=np.int32)  # each indexed chunk's document (its place in sources)

    @classmethod
    def build(cls, rows: Sequence[tuple[str, str, str]]) -> DocumentNames:
        """From each chunk's (source, its document's identity, its own text)."""
        index: dict[str, int] = {}
        written: list[str] = []  # each document's identity
        quarters: list[Counter[str]] = []  # the quarters its text names with a year
        fiscal_years: list[Counter[str]] = []  # the fiscal years its text names
        chunks: list[int] = []
        row_docs: list[int] = []
        for source, identity, text in rows:
            doc = index.get(source)
            if doc is None:
                doc = index[source] = len(written)
                written.append(identity)
                quarters.append(Counter())
                fiscal_years.append(Counter())
                chunks.append(0)
            chunks[doc] += 1
            row_docs.append(doc)
            quarters[doc].update(f"q{_ORDINALS[m.group(1).lower()]}" for m in _QUARTER_OF_YEAR.finditer(text))
            fiscal_years[doc].update(f"fy{year}" for year in _FISCAL_IN_TEXT.findall(text))
        identities = [identity_terms(identity, text_own(quarter, TEXT_QUARTER_SHARE),
                                     text_own(fiscal, TEXT_FISCAL_YEAR_SHARE))
                      for identity, quarter, fiscal in zip(written, quarters, fiscal_years, strict=True)]
        dates = [newest_date(identity) for identity in written]
        carried: dict[str, list[int]] = {}
        for doc, terms in enumerate(identities):
            for term in terms:
                carried.setdefault(term, []).append(doc)
        carried = {term: docs for term, docs in carried.items() if len(docs) < len(identities)}  # the rest tell nothing
        inside, outside = Counter(), Counter()
        for (_, _, text), doc in zip(rows, row_docs, strict=True):
            for term in naming_terms(text) & carried.keys():
                (inside if term in identities[doc] else outside)[term] += 1
        uses = {}
        for term, docs in carried.items():
            theirs = sum(chunks[doc] for doc in docs)
            others = len(row_docs) - theirs
            uses[term] = TermUse(tuple(docs), inside[term] / theirs, outside[term] / others if others else 0.0)
        periods = [sorted(t for t in terms if _PERIOD_TERM.fullmatch(t) and not _FORM_TERM.fullmatch(t))
                   for terms in identities]
        return cls(list(index), chunks, dates, uses, periods, row_docs)

    def save(self, folder: Path) -> None:
        terms = {term: [list(use.docs), use.inside, use.outside] for term, use in self.terms.items()}
        (folder / NAMES_FILE).write_text(json.dumps({"sources": self.sources, "chunks": self.chunks,
                                                     "dates": self.dates, "terms": terms,
                                                     "periods": [sorted(p) for p in self.periods],
                                                     "row_docs": self.row_docs.tolist()}), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> DocumentNames:
        saved = json.loads((folder / NAMES_FILE).read_text(encoding="utf-8"))
        terms = {term: TermUse(tuple(docs), inside, outside) for term, (docs, inside, outside) in saved["terms"].items()}
        return cls(saved["sources"], saved["chunks"], saved["dates"], terms, saved["periods"], saved["row_docs"])

    def quarters_held(self, question: str) -> tuple[float, list[str]] | None:
        """(the share of the quarters ``question`` asks about that some document is of, those none is of: "Q3
        2023"), the abstention's evidence (rag.abstain) that a question about a quarter the collection lacks is
        not answered by the ones it holds. A document of a year and no quarter (an annual report) holds every
        quarter of it. A fiscal year asked ("Q3 FY2024") is held by a document of that fiscal year or, where its
        text names none, of that year; a year asked plainly only by one of that year (NVIDIA's quarter ended
        October 2022 is Q3 of fiscal 2023, not of 2023). None when the question asks about no quarter with its
        year, or when no document is of a quarter (not a collection of periodic reports: the asked quarter would
        be missing from any)."""
        asked = asked_quarters(question)
        if not asked or not any(_QUARTER_TERM.fullmatch(term) for terms in self.periods for term in terms):
            return None
        missing = []
        for quarter, year in asked:
            plain = year.removeprefix("fy")
            if not any((quarter in terms or not any(_QUARTER_TERM.fullmatch(t) for t in terms))
                       and (year in terms or (year != plain and plain in terms
                                              and not any(t.startswith("fy") for t in terms)))
                       for terms in self.periods):
                missing.append(f"{quarter.upper()} {year.replace('fy', 'FY')}")
        return 1 - len(missing) / len(asked), missing

    def named(self, question: str, max_outside_share: float, min_inside_share: float) -> NamedDocuments | None:
        """The documents ``question`` names (see the module), or None when it names no strict subset of them."""
        n = len(self.sources)
        if n < 2:
            return None
        weights, periods = np.zeros(n), np.zeros(n)
        used: list[str] = []
        asked = naming_terms(question)
        for term in sorted(asked):
            use = self.terms.get(term)
            if use is None or len(use.docs) == n:
                continue
            docs = list(use.docs)
            if min(self.chunks[doc] for doc in docs) < 2:
                continue  # a one-chunk document among its own (below)
            if _PERIOD_TERM.fullmatch(term):  # other periods' text speaks of this year too: it names only its own
                fiscal = self.terms.get(f"fy{term}")
                if f"fy{term}" in asked and fiscal is not None:
                    # "Q3 FY2023": the filing whose text calls its year fiscal 2023 (ended October 2022) before one
                    # that is only dated 2023; the year counts once
                    docs = [doc for doc in docs if doc not in fiscal.docs]
                periods[docs] += FISCAL_FIRST if f"fy{term}" in asked else 1.0
                used.append(term)
                continue
            if len(term) < 2 or use.outside > max_outside_share or use.inside < min_inside_share:
                continue  # a letter; a word the others speak of; one its own documents do not
            weights[docs] += math.log(n / len(use.docs))
            used.append(term)
        # The names pick the documents; the periods the question states then narrow them, where any carries one.
        chosen = np.flatnonzero(weights >= weights.max() - 1e-9)
        if periods[chosen].max() > 0:
            chosen = chosen[periods[chosen] >= periods[chosen].max()]
        # "the latest" of what the question named; of a whole collection ("the latest firmware?") it says nothing
        latest = bool(used) and bool(_LATEST.search(question)) and not _EARLIER.search(question)
        if latest:
            dated = [(self.dates[i], i) for i in chosen if self.dates[i]]
            if len(dated) >= 2:
                newest = max(date for date, _ in dated)
                chosen = np.array([i for date, i in dated if date == newest])
            else:
                latest = False
        if len(chosen) == n or not used:
            return None
        picked = set(chosen.tolist())
        terms = [t for t in used if picked & set(self.terms[t].docs)]
        return NamedDocuments(sources=tuple(sorted(self.sources[i] for i in picked)),
                              terms=_as_written(question, terms), latest=latest)


def _as_written(question: str, terms: Sequence[str]) -> tuple[str, ...]:
    """The question's own words for BM25's terms ("Apple's" for "appl", "10-K" for "10k"), the term where no word
    stems to it."""
    written: dict[str, str] = {m.group(1).replace("-", "").lower(): m.group(1) for m in _FORM.finditer(question)}
    for word in re.findall(r"[^\W_]+", question):
        if any(ord(char) >= 0x2E80 for char in word):
            continue  # CJK: BM25's terms are its characters and pairs, shown as they are
        for term in tokenize(word):
            written.setdefault(term, word)
    return tuple(dict.fromkeys(written.get(term, term) for term in terms))
