"""Retrieval metrics, all in one place: hit rate and MRR at a cut-off, nDCG@k, latency percentiles; and whether
an answer holds a gold answer (:func:`answer_contains`, :func:`answer_lead`) or how many of its words
(:func:`answer_word_recall`).

Thin typed wrapper around LlamaIndex's ``llama_index.core.evaluation.retrieval.metrics``
``HitRate`` and ``MRR``, so the numbers follow LlamaIndex's ``RetrieverEvaluator``
definitions: hit = 1 if any expected id is among the retrieved ids; MRR = 1/rank of the
first retrieved id that is expected (0 if none). The cut-off ``k`` is applied by truncating
the retrieved list before calling LlamaIndex.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from llama_index.core.evaluation.retrieval.metrics import MRR, HitRate
from pydantic import BaseModel

_HIT = HitRate()
_MRR = MRR()


def _score(metric: HitRate | MRR, expected_ids: Iterable[str], retrieved_ids: Sequence[str], k: int | None) -> float:
    retrieved = list(retrieved_ids)[:k] if k else list(retrieved_ids)
    expected = list(expected_ids)
    if not expected or not retrieved:
        return 0.0
    return float(metric.compute(expected_ids=expected, retrieved_ids=retrieved).score)


def hit_rate(expected_ids: Iterable[str], retrieved_ids: Sequence[str], k: int | None = None) -> float:
    return _score(_HIT, expected_ids, retrieved_ids, k)


def mrr(expected_ids: Iterable[str], retrieved_ids: Sequence[str], k: int | None = None) -> float:
    return _score(_MRR, expected_ids, retrieved_ids, k)


@dataclass
class RetrievalScores:
    """Mean hit@k and MRR@k over a set of queries."""

    k: int
    n: int
    hit: float
    mrr: float

    def as_dict(self) -> dict:
        return {"k": self.k, "n": self.n, f"hit@{self.k}": self.hit, f"mrr@{self.k}": self.mrr}


def evaluate_runs(runs: Iterable[tuple[Iterable[str], Sequence[str]]], k: int) -> RetrievalScores:
    """``runs``: (expected_ids, retrieved_ids) per query. Returns the means of hit@k and MRR@k."""
    hits, mrrs = [], []
    for expected, retrieved in runs:
        expected = list(expected)
        hits.append(hit_rate(expected, retrieved, k))
        mrrs.append(mrr(expected, retrieved, k))
    n = len(hits)
    return RetrievalScores(k=k, n=n, hit=sum(hits) / n if n else 0.0, mrr=sum(mrrs) / n if n else 0.0)


class Latency(BaseModel):
    p50: float
    p95: float


def first_occurrences(ids: Iterable[str]) -> list[str]:
    """``ids`` without repeats, each where it first occurs (chunk hits -> documents)."""
    seen: set[str] = set()
    out = []
    for i in ids:
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out


def ndcg_at_k(relevance: dict[str, float], ranked_ids: Sequence[str], k: int = 10) -> float:
    """nDCG@k with gain = the judged score, discount 1/log2(rank + 1); 0.0 when nothing is relevant."""
    gains = sorted((g for g in relevance.values() if g > 0), reverse=True)[:k]
    ideal = sum(g / math.log2(rank + 1) for rank, g in enumerate(gains, 1))
    if ideal == 0:
        return 0.0
    dcg = sum(max(relevance.get(i, 0.0), 0.0) / math.log2(rank + 1) for rank, i in enumerate(ranked_ids[:k], 1))
    return dcg / ideal


def percentiles(values: Sequence[float]) -> Latency:
    if not values:
        return Latency(p50=0.0, p95=0.0)
    arr = np.asarray(values, dtype=float)
    return Latency(p50=round(float(np.percentile(arr, 50)), 2), p95=round(float(np.percentile(arr, 95)), 2))


def stage_percentiles(samples: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """``{stage: {"p50", "p95"}}`` of per-query milliseconds."""
    return {stage: percentiles(values).model_dump() for stage, values in samples.items()}


# ---- answers -------------------------------------------------------------------------------------
_CITATIONS = re.compile(r"\s*\[\d{1,3}\]")
_CJK = r"\u2e80-\u2fdf\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_SPACE_BY_CJK = re.compile(rf"(?<=[{_CJK}])\s+|\s+(?=[{_CJK}])")


def normalize_answer(text: str) -> str:
    """Text as answers are compared: NFKC, case-folded, punctuation turned into spaces, whitespace collapsed
    (and dropped next to CJK characters, which are written without spaces: "136 次" = "136次")."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)
    return _SPACE_BY_CJK.sub("", " ".join(text.split()))


def strip_citations(answer: str) -> str:
    """The answer without its ``[n]`` citation marks (a gold "1" must not match a "[1]")."""
    return _CITATIONS.sub("", answer)


def answer_lead(answer: str) -> str:
    """The answer's lead: its text before the first ``[n]`` citation (all of it when it cites nothing)."""
    found = _CITATIONS.search(answer)
    return answer[: found.start()] if found else answer


def _word_edge(text: str, i: int) -> bool:
    """Whether position ``i`` of normalised ``text`` is not inside a latin word or number."""
    return i <= 0 or i >= len(text) or not (text[i - 1].isascii() and text[i - 1].isalnum()
                                            and text[i].isascii() and text[i].isalnum())


def answer_contains(gold_answers: Iterable[str], answer: str) -> bool:
    """Whether one of ``gold_answers``, normalised, appears in ``answer`` (citations removed, normalised),
    on word boundaries for latin words and numbers ("four" is not in "fourteen"; CJK has no boundaries)."""
    text = normalize_answer(strip_citations(answer))
    for gold in gold_answers:
        needle = normalize_answer(gold)
        if not needle:
            continue
        start = text.find(needle)
        while start >= 0:
            if _word_edge(text, start) and _word_edge(text, start + len(needle)):
                return True
            start = text.find(needle, start + 1)
    return False


def answer_word_recall(gold_answers: Iterable[str], answer: str) -> float:
    """The share of a gold answer's distinct words that ``answer`` holds, the best over ``gold_answers``.

    For long gold answers (a paragraph an LLM wrote, as in the SEC 10-Q set) no answer contains one
    whole; this counts what it holds instead. Words are BM25's terms (``rag.lexical.tokenize``: stemmed,
    English stop words out, CJK characters and bigrams), so "increased" matches "increase" and "the"
    counts for nothing; citations are left out (a gold "1" must not match a "[1]").
    """
    from rag.lexical import tokenize

    held = set(tokenize(strip_citations(answer)))
    shares = [len(words & held) / len(words) for words in (set(tokenize(g)) for g in gold_answers) if words]
    return max(shares, default=0.0)


def warning_rates(answerable: Sequence, unanswerable: Sequence) -> tuple[float | None, float | None]:
    """(share of the unanswerable questions' results that warned, share of the answerable ones'): the
    abstention's two rates, from results with ``low_confidence``."""

    def share(results: Sequence) -> float | None:
        return round(sum(r.low_confidence for r in results) / len(results), 4) if results else None

    return share(unanswerable), share(answerable)
