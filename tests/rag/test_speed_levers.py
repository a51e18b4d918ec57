"""The query-speed levers of issue 13 keep their contracts: the rerank cascade's order, the pad-free ONNX
scoring, the tokenizer that replaced transformers', and the query-embedding cache. Their speed is measured
by `rerank-rag bench` (BENCHMARKS.md), never here."""

from __future__ import annotations

import numpy as np

from rag.embedders.models import QueryCache
from rag.pipeline import RagPipeline
from rag.retrieve import Candidate
from rag.store import StoredChunk


class _Recording:
    name = "recording"

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores
        self.seen: list[list[str]] = []

    def score(self, query, texts):
        self.seen.append(list(texts))
        return [self.scores[t] for t in texts]

    logits = score  # the pipeline orders by logits and shows the readable score: here one and the same

    def readable(self, logits):
        return list(logits)


def _found(*ids):
    return [Candidate(StoredChunk(chunk_id=i, doc_id=i, source=i, page=None, text=i, score=1.0 - n / 10),
                      rank=n + 1, score=1.0 - n / 10) for n, i in enumerate(ids)]


def test_the_cascade_reranks_only_the_top_d_and_keeps_the_rest_in_first_stage_order():
    reranker = _Recording({"a": 0.1, "b": 0.2, "c": 0.9, "d": 1.0, "e": 1.0})
    hits = RagPipeline._rank("q", _found("a", "b", "c", "d", "e"), reranker, rerank_weight=1.0, depth=3)
    assert reranker.seen == [["a", "b", "c"]]  # d and e never reach the model
    order = [h.chunk_id for h in sorted(hits, key=lambda h: h.final_rank)]
    assert order == ["c", "b", "a", "d", "e"]
    unscored = {h.chunk_id: h for h in hits if h.chunk_id in ("d", "e")}
    assert all(h.rerank_score is None and h.final_score is None for h in unscored.values())
    assert [unscored["d"].rerank_rank, unscored["e"].rerank_rank] == [4, 5]


def test_a_depth_at_or_over_the_candidates_reranks_them_all():
    reranker = _Recording({"a": 0.1, "b": 0.9})
    hits = RagPipeline._rank("q", _found("a", "b"), reranker, rerank_weight=1.0, depth=20)
    assert reranker.seen == [["a", "b"]]
    assert [h.chunk_id for h in sorted(hits, key=lambda h: h.final_rank)] == ["b", "a"]


def test_pair_tokenizer_matches_transformers_and_never_fails_on_a_long_question():
    from transformers import AutoTokenizer

    from rag.rerank import _PairTokenizer, resolve_reranker

    path, _ = resolve_reranker("rerank-minilm-l6")
    ours, theirs = _PairTokenizer(path), AutoTokenizer.from_pretrained(path)
    query, texts = "Who founded Acme?", ["Acme was founded by Ada in 1901. " * 30, "The sky is blue.", "日本語の文"]
    got = ours.encode_pairs(query, texts, 160)
    want = theirs([query] * 3, texts, truncation="only_second", max_length=160)
    assert got["input_ids"] == want["input_ids"] and got["token_type_ids"] == want["token_type_ids"]
    assert ours.model_max_length == 160
    long = ours.encode_pairs("why " * 400, ["short"], 160)  # only_second cannot fit it: both are cut
    assert len(long["input_ids"][0]) == 160


def test_a_pairs_onnx_score_does_not_depend_on_the_other_candidates():
    from rag.rerank import load_reranker

    reranker = load_reranker("rerank-minilm-l6")
    query = "How long does the battery take to charge?"
    alone = reranker.score(query, ["The battery charges fully in about four hours."])[0]
    among = reranker.score(query, ["Short.", "The battery charges fully in about four hours.",
                                   "A much longer passage about frames, wheels and the warranty terms. " * 6])[1]
    assert alone == among


def test_query_cache_returns_the_same_rows_without_calling_the_model_again():
    calls: list[list[str]] = []

    def compute(texts):
        calls.append(list(texts))
        return np.array([[float(len(t)), 1.0] for t in texts], dtype=np.float32)

    cache = QueryCache(size=2)
    first = cache.embed(["hello"], compute)
    again = cache.embed(["hello"], compute)
    assert calls == [["hello"]] and np.array_equal(first, again)
    again[0, 0] = -1  # a caller changing its row never changes the cache
    assert cache.embed(["hello"], compute)[0, 0] == 5.0
    cache.embed(["a"], compute)
    cache.embed(["b"], compute)  # "hello" is now the least recent of three: evicted
    cache.embed(["hello"], compute)
    assert calls[-1] == ["hello"]
    cache.embed(["x", "y"], compute)  # batches are not cached
    cache.embed(["x", "y"], compute)
    assert calls[-2:] == [["x", "y"], ["x", "y"]]
