"""Retrieval metrics: hit rate and MRR at a cut-off.

Thin typed wrapper around LlamaIndex's ``llama_index.core.evaluation.retrieval.metrics``
``HitRate`` and ``MRR``, so the numbers follow LlamaIndex's ``RetrieverEvaluator``
definitions: hit = 1 if any expected id is among the retrieved ids; MRR = 1/rank of the
first retrieved id that is expected (0 if none). The cut-off ``k`` is applied by truncating
the retrieved list before calling LlamaIndex.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Iterable, Sequence

from llama_index.core.evaluation.retrieval.metrics import MRR, HitRate

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
