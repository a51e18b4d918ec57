"""The extractive answer: the sentences of the top chunks that best answer the question, each cited [n].

Used when no LLM is configured (or it failed). Sentences are chosen by how well they *answer* the question,
not by how much they resemble it. Each candidate sentence of the top chunks is read twice, alone and with
the sentence before it as context, so that a sentence whose subject is in the one before ("It charges in 4.5
hours.") and the answer under an FAQ's question ("How long does it take to charge? A full charge takes 4.5
hours.") score as the passages they are. Three scorers read both passages: the cross-encoder reranker, the
multilingual embedder and the lexical overlap with the question (see ``SCORER_SHARES`` for why all three);
a sentence scores the mean of their standardised scores. Questions, bare headings and fragments are never
quoted (a question is still the context of the sentence after it).

The answer leads with the best sentence's passage (it and the chosen sentences next to it, in their order,
under one citation); up to two more sentences follow when they score within a margin of it and the answer
stays within ``ANSWER_MAX_CHARS``, grouped by chunk in the chunk's own order. ``ExtractiveAnswer.spans`` says where each quoted sentence sits in
its chunk's text (``chunk`` is the citation number), for the pages to highlight.

Measured against the answer it replaces (sentences most similar to the question, by the embedder), on the
same chunks of the default pipeline: BENCHMARKS.md, "Answer quality".

>>> extract_answer("How long does the battery take to charge?", chunks, reranker=reranker, embedder=embedder)
ExtractiveAnswer(answer='A full charge of the 500 Wh battery takes 4.5 hours with the standard 4 A charger. [1] ...')
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np

from rag.lexical import tokenize
from rag.statements import line_items, statement_kind, without_statement_names
from rag.table_rows import TABLE_HEADER_LINES, is_table_row, table_sentences  # noqa: F401 - re-exported
from rag.types import AnswerSpan, ChunkHit

NOTHING_FOUND = "The documents contain nothing that matches this question."
ANSWER_CHUNKS = 3  # sentences come from the best-ranked chunks only
MAX_SENTENCES = 3  # in an answer
MAX_CANDIDATES = 32  # sentences scored per question (two passages each): bounds the work on table-heavy chunks
MAX_SENTENCE_CHARS = 400  # a longer "sentence" (a table, a run-on list) is cut for the answer
# An answer's length: past it a sentence within the margin is passed over (a shorter one may still fit). Issue
# 24 §2, on the first 120 questions with answers of 8 dev sets (scripts/answer_focus.py): the SEC 10-Q answers
# averaged 554 characters, now 415 (the longest set); 500 cost .03 of the SEC gold words held, 600 .013.
ANSWER_MAX_CHARS = 600
RANK_PRIOR = 0.1  # embedder and lexical: + this / chunk rank (the reranker adds the chunk's rerank logit)
# A sentence's score is the mean of three standardised scores: the reranker's (what answers rather than
# resembles; it reads Chinese poorly, through an English vocabulary), the multilingual embedder's (meaning, in
# any language) and the lexical overlap (the share of the question's words, IDF-weighted, that the passage
# repeats: reading-comprehension questions reuse the answer sentence's words, in every language the BM25
# tokenizer reads). Measured on the same chunks (questions whose passage was found), contains / lead:
# XQuAD-zh (150) reranker + embedder .860/.673 -> all three .953/.807; see BENCHMARKS.md for the rest.
SCORER_SHARES = {"reranker": 1 / 3, "embedder": 1 / 3, "lexical": 1 / 3}
MIXED_MARGIN = 1.0  # a sentence after the lead is kept within this many standard deviations (of the mix)
# A question that asks for a number or a date ("How many", "When", "多少", "哪一年") is answered by a sentence
# with one: such sentences get this bonus, in each scorer's own units. Measured: +0.006 lead on
# held-out SQuAD, +0.05 on the sample FAQ questions.
NUMBER_BONUS = {"reranker": 4.0, "embedder": 0.05, "lexical": 0.1}
_NUMERIC_QUESTION = re.compile(
    r"\b(how (many|much|long|old|far|big|large|tall|often)|what (year|percentage|percent|age)|when)\b"
    r"|多少|几|哪一?年|什么时候|何时", re.IGNORECASE)
_NUMBER = re.compile(r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|"
                     r"fifty|hundred|thousand|million|billion|dozen|half|first|second|third)\b|[一二三四五六七八九十百千万亿两]",
                     re.IGNORECASE)

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af"
# Sentence ends: . ! ? followed by space (checked for abbreviations below), CJK 。！？ (no space needed, any
# closing quotes kept with the sentence), and line breaks that do not continue a wrapped sentence.
_END = re.compile(rf"[.!?]+[\"'”’)\]]*(?=\s)|(?:[。！？；]|[!?;](?=[{_CJK}]))+[”’」』）)\"']*|\n\s*")
_ABBREVIATIONS = frozenset((
    "mr", "mrs", "ms", "dr", "prof", "st", "sr", "jr", "vs", "e.g", "i.e", "no", "nos", "vol", "fig", "approx", "ca",
    "c", "inc", "ltd", "co", "corp", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov",
    "dec", "mt", "ft", "u.s", "u.k", "gen", "col", "lt", "sgt", "rev", "p", "pp", "figs", "art", "sec", "ch",
    "para", "dept", "est", "govt", "ref", "refs"))
# A piece that is only a list marker or a numbered label ("1.", "(b).", "iv.", "Item 2.", "Note 3."): its '.' does
# not end a sentence, the item goes on after it.
_MARKER = re.compile(r"^(?:\(?(?:\d{1,3}|[A-Za-z]|[ivxlcIVXLC]{1,5})\)?|(?:item|note|part|step|section|chapter|"
                     r"article|schedule|exhibit|no|fig|figure|table)\s+[\dA-Za-z]{1,5}(?:\.\d{1,3})?)\.$",
                     re.IGNORECASE)
_LIST_ITEM = re.compile(r"(?:\d{1,3}|[A-Za-z]|[ivx]{1,4})[.)]\s")  # a numbered line: "1. ", "b) "
# A sentence that starts in lowercase ("and the U.S. federal credit…", "hotel stays are capped…") starts
# mid-sentence: a chunk's overlap cut it. It may still answer, so it is quoted, after "… " to say it is a part.
# "iPad net sales…" and "eBay" start a sentence.
_STARTS_MID_SENTENCE = re.compile(r"^(?:[a-z][a-z\s'’,;:]|[)\]”’,;:])")
_QUESTION = re.compile(r"[?？]\s*[\"'”’)\]]*\s*$")
_HEADING_END = re.compile(r"[.!?。！？:：;；…)\]）\"”’]\s*$")
# A table's header of dates, which reads as a row of figures ("December 31, 2022 September 30, 2023 (...)")
_DATES_ROW = re.compile(r"^(?:[A-Z][a-z]{2,8}\.?\s+\d{1,2},?\s+(?:19|20)\d\d\s*)+(?:\(|$)")


@dataclass(frozen=True)
class Sentence:
    chunk: int  # 1-based: the citation number of its chunk
    start: int  # offsets into the chunk's text
    end: int
    text: str  # whitespace-normalised (wrapped lines rejoined)
    index: int  # position among the chunk's sentences


@dataclass
class ExtractiveAnswer:
    answer: str
    spans: list[AnswerSpan] = field(default_factory=list)


def _cjk(text: str) -> bool:
    return re.search(f"[{_CJK}]", text) is not None


def _weighted_len(text: str) -> int:
    """Characters, a CJK character counting as three (it carries about a word)."""
    return len(text) + 2 * len(re.findall(f"[{_CJK}]", text))


def _abbreviation_before(text: str, end: int) -> bool:
    """Whether the '.' that ends at ``end`` closes an abbreviation or an initial ("Dr.", "U.S.", "J. K.")."""
    word = re.search(r"(\S+)$", text[:end])
    token = word.group(1).rstrip(".").lower() if word else ""
    token = token.lstrip("(\"'“‘")
    return len(token) == 1 and token.isalpha() or token in _ABBREVIATIONS


def _wrapped(text: str, line_start: int, line_end: int, next_start: int) -> bool:
    """Whether a line break continues a sentence: the next line goes on in lowercase or with a bracket or
    comma, or the line before is a long one that did not end its sentence (PDF text wraps at ~90 chars)."""
    following = text[next_start:next_start + 1]
    if not following or following in "#*•>|" or _LIST_ITEM.match(text, next_start):
        return False
    line_begins = text.rfind("\n", 0, line_end) + 1
    line = text[max(line_start, line_begins):line_end].rstrip()
    next_line = text[next_start:text.find("\n", next_start) if "\n" in text[next_start:] else len(text)]
    if line_start <= line_begins and is_heading(line) and len(next_line.strip()) >= 60:
        return False  # a short line on its own, then a paragraph: a heading ("iPad" above "iPad net sales…")
    if following.islower() or following in "([,;:–" or following.isdigit() and re.search(r"\d\.$", line):
        return True  # lowercase, a bracket or a comma goes on; so do the digits after a decimal point ("$3.|3")
    return len(line) >= 60 and not _HEADING_END.search(line) and not _cjk(line[-1:])


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence, table row or line of ``text``, whitespace trimmed.

    A line break ends a sentence unless the next line goes on it (see :func:`_wrapped`: PDF text wraps);
    '.' ends one unless it closes an abbreviation or an initial, or the next word starts in lowercase."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _END.finditer(text):
        end, mark = match.end(), match.group()
        if mark[0] == "\n":
            if _wrapped(text, start, match.start(), end):  # the sentence goes on in the next line
                continue
            end = match.start()
        elif mark[0] in ".!?" and end < len(text) and text[end].isspace():
            gap = len(text[end:]) - len(text[end:].lstrip())
            after = text[end + gap:]
            if "\n" not in text[end:end + gap] and (after[:1].islower() or after[:1] in {",", ";", ":"}):
                continue  # "approx. three", "e.g. the"; a line that ends with a period ends its sentence
            if mark.rstrip("\"'”’)]") == "." and (_abbreviation_before(text, match.start() + 1)
                                                    or _MARKER.match(text[start:match.end()].strip())):
                continue
            if mark == "." and text[match.start() - 1:match.start()].isdigit() and after[:1].isdigit():
                continue  # "$3. 3 billion": a decimal point that a line or a cut parted from its digits
        piece = text[start:end]
        stripped = piece.strip()
        if stripped:
            offset = start + len(piece) - len(piece.lstrip())
            spans.append((offset, offset + len(stripped)))
        start = match.end()
    tail = text[start:]
    if tail.strip():
        offset = start + len(tail) - len(tail.lstrip())
        spans.append((offset, offset + len(tail.strip())))
    return spans


def split_sentences(text: str) -> list[str]:
    """Sentences and table rows of a chunk, wrapped lines rejoined, long ones cut, fragments dropped."""
    return [_display(text[s:e]) for s, e in sentence_spans(text) if _weighted_len(text[s:e].strip()) >= 20]


def _display(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= MAX_SENTENCE_CHARS:
        return text
    cut = text[:MAX_SENTENCE_CHARS]
    return (cut if _cjk(cut[-1:]) else cut.rsplit(" ", 1)[0]) + " …"


def is_question(text: str) -> bool:
    return _QUESTION.search(text) is not None


def is_heading(text: str) -> bool:
    """A bare heading or label: a markdown heading, or a short line with no sentence end and no number."""
    text = text.strip()
    if text.startswith("#"):
        return True
    if _HEADING_END.search(text) or re.search(r"\d", text):
        return False
    return _weighted_len(text) < 60 or len(text.split()) < 6 and not _cjk(text)


def sentences_of(chunks: Sequence[ChunkHit]) -> list[Sentence]:
    """Every sentence of ``chunks`` (headings and questions too: they are context), in order; each table row
    one of its own (see :func:`table_sentences`)."""
    out = []
    for n, chunk in enumerate(chunks, 1):
        for i, (start, end, text) in enumerate(table_sentences(chunk.text, sentence_spans(chunk.text))):
            out.append(Sentence(n, start, end, text, i))
    return out


def answerable(sentence: Sentence) -> bool:
    """Whether a sentence may be quoted as an answer: not a question, not a heading (a statement's title, a
    table's dates among them), not a fragment."""
    return (_weighted_len(sentence.text) >= 20 and not is_question(sentence.text) and not is_heading(sentence.text)
            and statement_kind(sentence.text) is None and not _DATES_ROW.match(sentence.text))


def _passages(sentences: list[Sentence], candidates: list[int]) -> tuple[list[str], list[int | None]]:
    """Each candidate alone, then each with the sentence before it (same chunk) as context: (texts, where
    each candidate's context passage is, or None when it opens its chunk)."""
    texts = [sentences[i].text for i in candidates]
    context_at: list[int | None] = []
    for i in candidates:
        before = sentences[i - 1] if i > 0 and sentences[i - 1].chunk == sentences[i].chunk else None
        if before is None:
            context_at.append(None)
            continue
        context_at.append(len(texts))
        texts.append(f"{before.text} {sentences[i].text}")
    return texts, context_at


def _logits(scores) -> np.ndarray:
    """Scores as logits: a reranker's probabilities (sigmoid outputs) are turned back; raw scores (an LLM
    reranker's "Yes" logit) are kept."""
    values = np.asarray(scores, dtype=float)
    if values.size and values.min() >= 0.0 and values.max() <= 1.0:
        clipped = np.clip(values, 1e-6, 1 - 1e-6)
        return np.log(clipped / (1 - clipped))
    return values


def candidates_of(sentences: list[Sentence]) -> list[int]:
    """The sentences that may be quoted (see :func:`answerable`), each text once (overlapping chunks repeat
    sentences: the best-ranked chunk keeps it), at most ``MAX_CANDIDATES``."""
    seen: set[str] = set()
    out = []
    for i, sentence in enumerate(sentences):
        key = sentence.text.casefold()
        if answerable(sentence) and key not in seen:
            seen.add(key)
            out.append(i)
    return out[:MAX_CANDIDATES]


def _standardised(values: np.ndarray) -> np.ndarray:
    spread = values.std()
    return (values - values.mean()) / spread if spread > 1e-9 else np.zeros_like(values)


def lexical_overlap(question: str, texts: Sequence[str], idf_over: int) -> np.ndarray:
    """For each text, the share of the question's terms (BM25's tokenizer: stemmed words, CJK characters and
    bigrams) it contains, each term weighted by its IDF over the first ``idf_over`` texts (the candidate
    sentences: a word every sentence repeats tells none apart). Hand-written: a BM25 score over a dozen
    sentences would reward length and repetition, and this needs no index."""
    terms = set(tokenize(question))
    if not terms:
        return np.zeros(len(texts))
    bags = [set(tokenize(text)) for text in texts]
    weight = {t: math.log((idf_over + 1) / (sum(t in bag for bag in bags[:idf_over]) + 0.5)) for t in terms}
    total = sum(weight.values()) or 1.0
    return np.array([sum(weight[t] for t in terms & bag) / total for bag in bags])


def score_sentences(question: str, chunks: Sequence[ChunkHit], *, reranker=None, embedder=None,
                    answer_chunks: int = ANSWER_CHUNKS, context: str | None = None,
                    context_share: float = 0.0) -> tuple[list[Sentence], list[int], list[float]]:
    """(all sentences of the answer chunks, the answerable candidates' indexes, their scores: higher answers
    better). Each scorer reads every candidate alone and with its context, sums the two, and adds a chunk
    prior (reranker: the chunk's rerank logit; embedder and lexical: ``RANK_PRIOR`` / chunk rank) and
    ``NUMBER_BONUS`` for a sentence with a number when the question asks for one. The scorers at hand (the
    lexical one always) are standardised over the candidates and mixed by ``SCORER_SHARES``. With a
    ``context`` query (an elliptical follow-up's, :mod:`rag.followup`), each score moves ``context_share`` of
    the way to the context query's."""
    chunks = list(chunks)[:answer_chunks]
    sentences = sentences_of(chunks)
    candidates = candidates_of(sentences)
    if not candidates:
        return sentences, [], []
    texts, context_at = _passages(sentences, candidates)
    # The embedder scores only where no reranker does (a language the reranker does not read): beside the
    # L-12 it added ~1 lead in 80 on xquad/en and held-out SQuAD and cost 2/3 of the answer's time (~1 s of 1.1)
    documents = embedder.embed_documents(texts) if embedder is not None and reranker is None else None
    mixed = mix_scores(raw_scores(question, chunks, sentences, candidates, texts, reranker, embedder, documents),
                       context_at)
    if context and context_share:
        also = mix_scores(raw_scores(context, chunks, sentences, candidates, texts, reranker, embedder, documents),
                          context_at)
        mixed = (1 - context_share) * mixed + context_share * also
    return sentences, candidates, [float(x) for x in mixed]


@dataclass
class RawScores:
    """Each scorer's reading of the candidates, before they are mixed (:func:`mix_scores`): kept apart so
    that the mix can be measured offline without scoring again (``scripts/answer_focus.py``)."""

    passages: dict[str, np.ndarray]  # scorer -> its score of each passage (candidates alone, then with context)
    priors: dict[str, np.ndarray]  # scorer -> the chunk prior of each candidate
    numeric: np.ndarray  # the question asks for a number and the candidate has one


def raw_scores(question: str, chunks: list[ChunkHit], sentences: list[Sentence], candidates: list[int],
               texts: list[str], reranker, embedder, documents: np.ndarray | None) -> RawScores:
    """The scorers' readings of the passages ``texts`` for ``question`` (see :func:`score_sentences`);
    ``documents``: the passages' embeddings, when the embedder scores."""
    chunk_of = np.array([sentences[i].chunk - 1 for i in candidates])
    numeric = (np.array([_NUMBER.search(sentences[i].text) is not None for i in candidates])
               if _NUMERIC_QUESTION.search(question) else np.zeros(len(candidates), dtype=bool))
    rank_prior = RANK_PRIOR / np.arange(1, len(chunks) + 1)
    passages = {"lexical": lexical_overlap(question, texts, len(candidates))}
    priors = {"lexical": rank_prior[chunk_of]}
    if reranker is not None:
        reranked = all(c.rerank_score is not None for c in chunks)
        prior = _logits([c.rerank_score for c in chunks]) if reranked else np.zeros(len(chunks))
        passages["reranker"], priors["reranker"] = _logits(reranker.score(question, texts)), prior[chunk_of]
    if embedder is not None and documents is not None:
        passages["embedder"] = documents @ embedder.embed_queries([question])[0]
        priors["embedder"] = rank_prior[chunk_of]
    return RawScores(passages, priors, numeric)


def mix_scores(raw: RawScores, context_at: list[int | None]) -> np.ndarray:
    """The candidates' scores: each scorer's (alone + with the sentence before + chunk prior + number bonus),
    standardised over the candidates, mixed by ``SCORER_SHARES``."""
    count = len(context_at)
    mixed = np.zeros(count)
    for name, passage in raw.passages.items():
        alone = passage[:count]
        with_before = np.array([passage[j] if j is not None else alone[k] for k, j in enumerate(context_at)])
        score = alone + with_before + raw.priors[name] + NUMBER_BONUS[name] * raw.numeric
        mixed += SCORER_SHARES[name] * _standardised(score)
    return mixed / sum(SCORER_SHARES[name] for name in raw.passages)


def extract_answer(question: str, chunks: Sequence[ChunkHit], *, reranker=None, embedder=None,
                   max_sentences: int = MAX_SENTENCES, context: str | None = None,
                   context_share: float = 0.0, named: Collection[str] | None = None) -> ExtractiveAnswer:
    """The extractive answer to ``question`` from ``chunks`` (best first): at most ``max_sentences``
    sentences, the best one first, each cited [n], scored by the lexical overlap and whichever of ``reranker``
    and ``embedder`` are given (and ``context``, see :func:`score_sentences`). ``named``: the documents (sources)
    the question names (rag.doc_names); where any chunk is theirs, only their sentences are quoted, and of those,
    where any stands in a statement the question names (``ChunkHit.in_named_statement``), only its rows; where it
    names none, the rows that hold a line item it asks for, of the statement read first for it, where any does."""
    if not chunks:
        return ExtractiveAnswer(NOTHING_FOUND)
    if any(chunk.in_named_statement for chunk in chunks):  # the statement is chosen: its name scores no row
        question = without_statement_names(question)
    sentences, candidates, scores = score_sentences(question, chunks, reranker=reranker, embedder=embedder,
                                                    context=context, context_share=context_share)
    items = line_items(question)

    def holds_item(i: int) -> bool:  # a row of the statement read for the line item: that item and its figures
        text = sentences[i].text
        return (chunks[sentences[i].chunk - 1].in_line_item_statement and bool(items & line_items(text))
                and any(char.isdigit() for char in text))

    for asked in (lambda i: chunks[sentences[i].chunk - 1].source in named if named else False,
                  lambda i: chunks[sentences[i].chunk - 1].in_named_statement, holds_item):
        if any(asked(i) for i in candidates):
            kept = [k for k, i in enumerate(candidates) if asked(i)]
            candidates, scores = [candidates[k] for k in kept], [scores[k] for k in kept]
    if not candidates:  # nothing but headings and questions: quote the best chunk's start
        text = chunks[0].text.strip()
        shown = _display(text)
        start = chunks[0].text.find(text[:1]) if text else 0
        return ExtractiveAnswer(f"{shown} [1]", [AnswerSpan(chunk=1, start=start, end=start + len(text))])
    return compose_answer(sentences, candidates, scores, max_sentences=max_sentences)


def compose_answer(sentences: list[Sentence], candidates: list[int], scores: Sequence[float], *,
                   max_sentences: int = MAX_SENTENCES, max_chars: int = ANSWER_MAX_CHARS) -> ExtractiveAnswer:
    """The answer from scored candidates (:func:`score_sentences`, at least one): the best one, then those
    within ``MIXED_MARGIN`` of it while the answer stays within ``max_chars`` (one that would overrun it is
    passed over for a shorter one). The best sentence's passage leads: it and the chosen sentences next to
    it in its chunk, in the chunk's order; then the rest, grouped by chunk. Sentences that follow each other
    in a chunk share one citation, so the lead (the text before the first [n]) is that whole passage."""
    order = sorted(range(len(candidates)), key=lambda k: -scores[k])
    floor = scores[order[0]] - MIXED_MARGIN
    chosen = [candidates[order[0]]]
    length = len(_display(sentences[chosen[0]].text)) + 4
    for k in order[1:]:
        if len(chosen) >= max_sentences or scores[k] < floor:
            break
        more = len(_display(sentences[candidates[k]].text)) + 5  # a space and a citation
        if length + more <= max_chars:
            chosen.append(candidates[k])
            length += more
    lead = chosen[0]
    # The rest grouped with their chunk (the lead's chunk first), each chunk in its own order.
    chunk_rank = {sentences[lead].chunk: 0}
    for i in chosen[1:]:
        chunk_rank.setdefault(sentences[i].chunk, len(chunk_rank))
    rest = sorted(chosen[1:], key=lambda i: (chunk_rank[sentences[i].chunk], i))

    def neighbours(i: int) -> bool:
        return i in chosen and 0 <= i < len(sentences) and sentences[i].chunk == sentences[lead].chunk

    first, last = lead, lead
    while neighbours(first - 1):
        first -= 1
    while neighbours(last + 1):
        last += 1
    passage = list(range(first, last + 1))
    picked = passage + [i for i in rest if i not in passage]
    parts = []
    for k, i in enumerate(picked):
        following = picked[k + 1] if k + 1 < len(picked) else None
        joined = following == i + 1 and sentences[following].chunk == sentences[i].chunk
        started = k > 0 and picked[k - 1] == i - 1 and sentences[i - 1].chunk == sentences[i].chunk
        part = ("… " if _STARTS_MID_SENTENCE.match(sentences[i].text) and not started else "")
        parts.append(part + _display(sentences[i].text) + ("" if joined else f" [{sentences[i].chunk}]"))
    answer = " ".join(parts)
    spans = [AnswerSpan(chunk=sentences[i].chunk, start=sentences[i].start, end=sentences[i].end) for i in picked]
    return ExtractiveAnswer(answer, spans)
