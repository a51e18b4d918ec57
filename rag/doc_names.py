"""Which documents a question names (issue 33): "Amazon's Q2 2023 10-Q" among twelve filings of three companies.

A chunk's context line (:mod:`rag.chunk_context`) lets BM25, the embedder and the reranker read whose page it is,
but one line among a page's words weighs little against a neighbour's page on the same subject: on twelve quarterly
filings the company was found, the quarter rarely. A person would open the asked filing first. This module does:
each document's identity (its title, cover, period, running lines and file name, as ingest found them) is matched
against the question's words, and the first stage then searches the documents the question names, as if the user
had picked them (``RagPipeline.ask(sources=...)``).

A question word names documents only where it tells them apart and the text agrees:

* it is in the identity of some documents but not all ("Amazon", "Q2", "2023"; "Form" and "10-Q" name none);
* the other documents' text seldom uses it (at most ``Settings.route_max_outside_share`` of their chunks): "Apple"
  names Apple's filings, while "United States" on Amazon's cover names nothing, since every filing speaks of the
  United States. This is what keeps a collection of titled passages (a library's abstracts) from being cut to the
  passages whose titles share a word with the question: their words run through the others' text too;
* numbers name only as years or quarters ("2023", "Q3", "third quarter", "第三季度"): a day of a cover's date does not.

The documents holding the most of those words, weighted by how few documents carry each (IDF), are the ones asked.
"the latest" / "most recent" / "最新" then keeps, among them, those whose identity states the newest date. Nothing
here knows a company: the names come from the documents. Hand-written: llama-index's auto-retrievers ask an LLM
to write a metadata filter, which the offline default has none of.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rag.bm25_tokens import tokenize
from rag.types import NamedDocuments

NAMES_FILE = "doc_names.json"
ROWS_FILE = "doc_rows.npy"

_ORDINALS = {"first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4}
_QUARTER_WORDS = re.compile(r"\b(first|1st|second|2nd|third|3rd|fourth|4th)\s+(?:fiscal\s+)?quarter\b", re.I)
_QUARTER_ZH = re.compile(r"第?([一二三四1-4])季度")
_ZH_DIGITS = {"一": 1, "二": 2, "三": 3, "四": 4}
_FISCAL_YEAR = re.compile(r"\bFY\s?'?((?:19|20)\d\d)\b", re.I)
_YEAR = re.compile(r"(?:19|20)\d\d")
_LATEST = re.compile(r"\b(?:latest|most\s+recent|newest|last\s+(?:filing|report|quarter|10-[qk]))\b|最新|最近一",
                     re.I)
# "the most recent quarter compared to previous ones" asks for them all.
_EARLIER = re.compile(r"\b(?:previous|prior|earlier|preceding|over\s+time|trends?)\b|之前|以前|上一|历年", re.I)
_PERIOD_TERM = re.compile(r"(?:19|20)\d\d|q[1-4]")
_MONTHS = {m: i for i, m in enumerate(
    "jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)}
_DATE_ISO = re.compile(r"\b((?:19|20)\d\d)-(\d\d)-(\d\d)\b")
_DATE_WORDS = re.compile(r"\b(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+(\d{1,2}),?\s+((?:19|20)\d\d)\b",
                         re.I)
_QUARTER_YEAR = re.compile(r"\bQ([1-4])\s*((?:19|20)\d\d)\b|\b((?:19|20)\d\d)\s*Q([1-4])\b", re.I)


def _spelled_periods(text: str) -> str:
    """The text with its spelled-out quarters and fiscal years also written as the tokens identities carry:
    "third quarter" -> q3, "第三季度" -> q3, "FY2023" -> 2023."""
    extra = [f"q{_ORDINALS[m.group(1).lower()]}" for m in _QUARTER_WORDS.finditer(text)]
    extra += [f"q{_ZH_DIGITS.get(m.group(1)) or m.group(1)}" for m in _QUARTER_ZH.finditer(text)]
    extra += [m.group(1) for m in _FISCAL_YEAR.finditer(text)]
    return f"{text} {' '.join(extra)}" if extra else text


def naming_terms(text: str) -> set[str]:
    """The terms of ``text`` that can name a document: BM25's terms, numbers kept only as years or quarters."""
    return {term for term in tokenize(_spelled_periods(text))
            if not term[0].isdigit() or _YEAR.fullmatch(term)}


def newest_date(text: str) -> str | None:
    """The newest date an identity states (ISO; else a quarter's label, read as its last month): how "the latest"
    orders documents."""
    dates = [f"{y}-{m}-{d}" for y, m, d in _DATE_ISO.findall(text)]
    dates += [f"{y}-{_MONTHS[mon.lower()[:3]]:02d}-{int(d):02d}" for mon, d, y in _DATE_WORDS.findall(text)]
    if not dates:  # a fiscal quarter's label only where no date is written: fiscal and calendar quarters differ
        dates = [f"{y1 or y2}-{3 * int(q1 or q2):02d}-28" for q1, y1, y2, q2 in _QUARTER_YEAR.findall(text)]
    return max(dates) if dates else None


class DocumentNames:
    """Each document's identity terms and which chunk rows are whose: kept with the BM25 index (rag.lexical)."""

    def __init__(self, sources: Sequence[str], identities: Sequence[str], row_docs: np.ndarray) -> None:
        self.sources = list(sources)
        self.identities = list(identities)
        self.row_docs = row_docs  # per BM25 row (chunk), the index of its document in ``sources``
        self.dates = [newest_date(text) for text in self.identities]
        self.term_docs: dict[str, np.ndarray] = {}
        carried: dict[str, list[int]] = {}
        for doc, identity in enumerate(self.identities):
            for term in naming_terms(identity):
                carried.setdefault(term, []).append(doc)
        self.term_docs = {term: np.array(docs, dtype=np.int32) for term, docs in carried.items()}
        self.doc_rows = np.bincount(row_docs, minlength=len(self.sources)) if len(row_docs) else np.zeros(0, int)

    @classmethod
    def build(cls, rows: Sequence[tuple[str, str]]) -> DocumentNames:
        """From each BM25 row's (source, identity text), in row order."""
        index: dict[str, int] = {}
        identities: list[str] = []
        row_docs = np.empty(len(rows), dtype=np.int32)
        for row, (source, identity) in enumerate(rows):
            if source not in index:
                index[source] = len(identities)
                identities.append(identity)
            row_docs[row] = index[source]
        return cls(list(index), identities, row_docs)

    def save(self, folder: Path) -> None:
        (folder / NAMES_FILE).write_text(json.dumps({"sources": self.sources, "identities": self.identities}),
                                         encoding="utf-8")
        np.save(folder / ROWS_FILE, self.row_docs)

    @classmethod
    def load(cls, folder: Path) -> DocumentNames:
        saved = json.loads((folder / NAMES_FILE).read_text(encoding="utf-8"))
        return cls(saved["sources"], saved["identities"], np.load(folder / ROWS_FILE, mmap_mode="r"))

    def named(self, question: str, rows_with, max_outside_share: float) -> NamedDocuments | None:
        """The documents ``question`` names (see the module), or None when it names no strict subset of them.

        ``rows_with(term)`` gives the BM25 rows (chunks) whose indexed text holds ``term``."""
        n = len(self.sources)
        if n < 2:
            return None
        weights, periods = np.zeros(n), np.zeros(n)
        used: list[str] = []
        for term in sorted(naming_terms(question)):
            docs = self.term_docs.get(term)
            if docs is None or len(docs) == n:
                continue
            if _PERIOD_TERM.fullmatch(term):  # other periods' text speaks of this year too: it names only its own
                periods[docs] += 1
                used.append(term)
                continue
            inside = np.zeros(n, dtype=bool)
            inside[docs] = True
            outside_rows = int(self.doc_rows[~inside].sum())
            using = np.asarray(rows_with(term), dtype=np.int64)
            outside_using = int((~inside[self.row_docs[using]]).sum()) if len(using) else 0
            if outside_rows and outside_using / outside_rows > max_outside_share:
                continue  # the other documents speak of it too: it names none of them
            weights[docs] += math.log(n / len(docs))
            used.append(term)
        # The names pick the documents; the periods the question states then narrow them, where any carries one.
        chosen = np.flatnonzero(weights >= weights.max() - 1e-9)
        if periods[chosen].max() > 0:
            chosen = chosen[periods[chosen] >= periods[chosen].max()]
        latest = bool(_LATEST.search(question)) and not _EARLIER.search(question)
        if latest:
            dated = [(self.dates[i], i) for i in chosen if self.dates[i]]
            if len(dated) >= 2:
                newest = max(date for date, _ in dated)
                chosen = np.array([i for date, i in dated if date == newest])
            else:
                latest = False
        if len(chosen) == n or not (used or latest):
            return None
        picked = set(chosen.tolist())
        terms = [t for t in used if picked & set(self.term_docs[t].tolist())]
        return NamedDocuments(sources=tuple(sorted(self.sources[i] for i in picked)),
                              terms=_as_written(question, terms), latest=latest)


def _as_written(question: str, terms: Sequence[str]) -> tuple[str, ...]:
    """The question's own words for BM25's terms ("Apple's" for "appl"), the term where no word stems to it."""
    written: dict[str, str] = {}
    for word in re.findall(r"[^\W_]+", question):
        for term in tokenize(word):
            written.setdefault(term, word)
    return tuple(dict.fromkeys(written.get(term, term) for term in terms))
