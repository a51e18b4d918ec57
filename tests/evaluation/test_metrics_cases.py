"""Metric code against hand-computed cases: several relevant docs, none retrieved, cut-offs, ties, chunk→doc."""

from __future__ import annotations

import math

import pytest

from evaluation.metrics import evaluate_runs, first_occurrences, hit_rate, mrr, ndcg_at_k, percentiles
from rag.pipeline import RagPipeline
from rag.retrieve import Candidate
from rag.store import StoredChunk


def test_several_relevant_the_first_one_found_counts():
    # relevant: a and c; retrieved b, c, a -> first relevant at rank 2
    assert hit_rate({"a", "c"}, ["b", "c", "a"], k=5) == 1.0
    assert mrr({"a", "c"}, ["b", "c", "a"], k=5) == pytest.approx(1 / 2)


def test_no_relevant_document_retrieved_scores_zero():
    assert hit_rate({"x"}, ["a", "b", "c"], k=5) == 0.0
    assert mrr({"x"}, ["a", "b", "c"], k=5) == 0.0
    assert hit_rate({"x"}, [], k=5) == 0.0 and mrr({"x"}, [], k=5) == 0.0


def test_cut_off_applies_before_scoring():
    assert hit_rate({"c"}, ["a", "b", "c"], k=2) == 0.0
    assert mrr({"c"}, ["a", "b", "c"], k=3) == pytest.approx(1 / 3)


def test_mean_over_queries():
    # q1: rank 1 -> (1, 1); q2: rank 4 -> (1, .25); q3: missing -> (0, 0)
    scores = evaluate_runs([({"a"}, ["a", "b"]), ({"d"}, ["a", "b", "c", "d"]), ({"z"}, ["a"])], k=5)
    assert scores.n == 3
    assert scores.hit == pytest.approx(2 / 3)
    assert scores.mrr == pytest.approx((1 + 0.25 + 0) / 3)


class _ConstantReranker:
    name = "constant"

    def __init__(self, scores):
        self.scores = scores

    def score(self, query, texts):
        return list(self.scores)

    logits = score  # the pipeline orders by logits and shows the readable score: here one and the same

    def readable(self, logits):
        return list(logits)


def _found(*ids):
    return [Candidate(StoredChunk(chunk_id=i, doc_id=i, source=i, page=None, text=i, score=1.0 - n / 10),
                      rank=n + 1, score=1.0 - n / 10) for n, i in enumerate(ids)]


def test_rerank_ties_keep_retrieval_order():
    # all rerank scores equal -> the reranked order is the retrieval order, so the metrics are unchanged
    found = _found("a", "b", "c")
    hits = RagPipeline._rank("q", found, _ConstantReranker([0.5, 0.5, 0.5]))
    order = [h.chunk_id for h in sorted(hits, key=lambda h: h.final_rank)]
    assert order == ["a", "b", "c"]
    assert mrr({"b"}, order, 5) == pytest.approx(1 / 2)


def test_partial_tie_breaks_by_retrieval_rank():
    # c scores highest; a and b tie below it and keep their retrieval order
    found = _found("a", "b", "c")
    hits = RagPipeline._rank("q", found, _ConstantReranker([0.2, 0.2, 0.9]))
    order = [h.chunk_id for h in sorted(hits, key=lambda h: h.final_rank)]
    assert order == ["c", "a", "b"]
    assert mrr({"a"}, order, 5) == pytest.approx(1 / 2)
    assert mrr({"b"}, order, 2) == 0.0


def test_chunk_hits_map_to_their_document_at_the_first_occurrence():
    # chunks of d1, d2, d1, d3 -> documents d1 (rank 1), d2 (2), d3 (3)
    docs = first_occurrences(["d1", "d2", "d1", "d3"])
    assert docs == ["d1", "d2", "d3"]
    assert mrr({"d3"}, docs, 5) == pytest.approx(1 / 3)


def test_ndcg_binary_and_graded():
    assert ndcg_at_k({"a": 1}, ["a", "b"]) == pytest.approx(1.0)
    assert ndcg_at_k({"a": 1}, ["b", "a"]) == pytest.approx(1 / math.log2(3))  # 0.6309
    # graded: a=2, b=1, ranked b, a -> (1 + 2/log2 3) / (2 + 1/log2 3) = 0.8597
    assert ndcg_at_k({"a": 2, "b": 1}, ["b", "a"]) == pytest.approx((1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3)))
    assert ndcg_at_k({"a": 1}, ["b", "c"]) == 0.0
    assert ndcg_at_k({}, ["a"]) == 0.0
    assert ndcg_at_k({"a": 1}, ["b"] * 10 + ["a"], k=10) == 0.0  # beyond the cut-off


def test_percentiles():
    stats = percentiles(list(range(1, 101)))
    assert stats.p50 == pytest.approx(50.5)
    assert stats.p95 == pytest.approx(95.05)
    assert percentiles([]).p50 == 0.0
