"""The first stage: reciprocal rank fusion by hand, and dense / BM25 / hybrid over a real store."""

from __future__ import annotations

import pytest

from ingest.pipeline import Ingestor, SourceFile
from rag.pipeline import RagPipeline
from rag.retrieve import rrf
from rag.settings import Settings


def test_rrf_on_a_hand_made_case() -> None:
    fused = dict(rrf({"dense": ["a", "b", "c"], "bm25": ["c", "d"]}, k=60))
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)  # 3rd in dense, 1st in bm25
    assert fused["a"] == pytest.approx(1 / 61)
    assert fused["b"] == pytest.approx(1 / 62)
    assert fused["d"] == pytest.approx(1 / 62)
    assert [item for item, _ in rrf({"dense": ["a", "b", "c"], "bm25": ["c", "d"]}, k=60)][:2] == ["c", "a"]


def test_rrf_weights_and_ties() -> None:
    # equal scores keep the order in which the items were first seen
    assert [i for i, _ in rrf({"x": ["a"], "y": ["b"]})] == ["a", "b"]
    # a weight of 3 on y puts its first item ahead
    assert [i for i, _ in rrf({"x": ["a"], "y": ["b"]}, weights={"y": 3.0})] == ["b", "a"]
    # a weight of 0 leaves that side's items last
    assert rrf({"x": ["a"], "y": ["b"]}, weights={"x": 0.0})[-1] == ("a", 0.0)


PASSAGES = {
    "pump.txt": "The XR-17 coolant pump is serviced every 400 hours with a torque of 12 Nm.",
    "lunch.txt": "Lunch is served in the canteen between noon and two in the afternoon.",
    "garden.txt": "The garden behind the office has apple trees and a small pond.",
    "zh.txt": "电池充电需要两个小时，充满后可以骑行八十公里。",
}


@pytest.fixture
def store(settings: Settings) -> Settings:
    results = Ingestor(settings).ingest([SourceFile(name, data=text.encode()) for name, text in PASSAGES.items()])
    assert all(r.status == "ok" for r in results)
    return settings


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_each_first_stage_fills_its_own_fields(store: Settings, mode: str) -> None:
    result = RagPipeline(store.model_copy(update={"reranker": "none"})).ask(
        "XR-17 coolant pump torque", retrieval=mode, top_k=4, top_n=2, generate=False)
    assert result.retrieval == mode
    top = result.chunks[0]
    assert top.source == "pump.txt"
    assert (top.dense_rank is not None) == (mode in ("dense", "hybrid"))
    assert (top.bm25_rank is not None) == (mode in ("bm25", "hybrid"))
    assert (top.fused_rank is not None) == (mode == "hybrid")
    timings = result.timings_ms
    assert (timings.bm25 > 0) == (mode != "dense") and (timings.search > 0) == (mode != "bm25")


def test_bm25_returns_only_chunks_that_share_a_word(store: Settings) -> None:
    result = RagPipeline(store.model_copy(update={"reranker": "none"})).ask(
        "电池充电", retrieval="bm25", top_k=10, generate=False)
    assert [c.source for c in result.candidates] == ["zh.txt"]
    assert result.candidates[0].found_by == "bm25"


def test_hybrid_marks_where_each_candidate_came_from(store: Settings) -> None:
    result = RagPipeline(store.model_copy(update={"reranker": "none"})).ask(
        "coolant pump", retrieval="hybrid", top_k=4, generate=False)
    by_source = {c.source: c for c in result.candidates}
    assert by_source["pump.txt"].found_by == "both"
    assert {c.found_by for c in result.candidates if c.source != "pump.txt"} == {"dense"}
    assert [c.fused_rank for c in result.candidates] == list(range(1, len(result.candidates) + 1))
