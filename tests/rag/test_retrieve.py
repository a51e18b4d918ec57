"""The first stage: the fusions by hand, and dense / BM25 / hybrid over a real store."""

from __future__ import annotations

import pytest

from ingest.pipeline import Ingestor, SourceFile
from rag.pipeline import RagPipeline
from rag.retrieve import fuse, rrf
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


# One side sure of its best hit (BM25: 30 against 2 and 1), the other unsure (cosines .62, .61, .60).
SURE_AND_UNSURE = {"dense": [("d1", 0.62), ("d2", 0.61), ("b1", 0.60)],
                   "bm25": [("b1", 30.0), ("b2", 2.0), ("b3", 1.0)]}


def test_relative_fusion_scales_each_side_to_its_own_list() -> None:
    fused = dict(fuse("relative", SURE_AND_UNSURE))
    assert fused["b1"] == pytest.approx(0.0 + 1.0)  # last of dense, first of BM25
    assert fused["d1"] == pytest.approx(1.0) and fused["d2"] == pytest.approx(0.5)
    assert fused["b2"] == pytest.approx(1 / 29) and fused["b3"] == pytest.approx(0.0)
    # weights scale a side's share; a side with one hit (or equal scores) counts it fully
    assert dict(fuse("relative", SURE_AND_UNSURE, weights={"bm25": 0.5}))["b1"] == pytest.approx(0.5)
    assert fuse("relative", {"dense": [("a", 0.3)], "bm25": []}) == [("a", 1.0)]


def test_relative_fusion_lets_a_sure_side_outvote_a_weak_agreement() -> None:
    """The case of a side blind to the question (dense on Chinese text): BM25 is sure of x (30 against 2
    and 1) and dense finds nothing clearly, yet ranks y second. RRF sees only ranks, so y's two second
    places beat x's one first; relative fusion sees how far each hit stands above its side's others."""
    ranked = {"dense": [("d1", 0.62), ("y", 0.615), ("d3", 0.60)], "bm25": [("x", 30.0), ("y", 2.0), ("b3", 1.0)]}
    assert [item for item, _ in fuse("rrf", ranked)][0] == "y"
    fused = fuse("relative", ranked)
    assert {item for item, _ in fused[:2]} == {"d1", "x"} and fused[2][0] == "y"
    with pytest.raises(ValueError, match="fusion must be one of"):
        fuse("borda", ranked)


def test_distribution_fusion_clips_to_three_sigma() -> None:
    fused = dict(fuse("distribution", {"dense": [("a", 1.0), ("b", 0.0)], "bm25": []}))
    # mean .5, sigma .5: the range is [-1, 2], so 1.0 scales to 2/3 and 0.0 to 1/3
    assert fused["a"] == pytest.approx(2 / 3) and fused["b"] == pytest.approx(1 / 3)


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


@pytest.mark.parametrize("fusion", ["relative", "rrf", "distribution"])
def test_the_fusion_setting_orders_the_hybrid_candidates(store: Settings, fusion: str) -> None:
    settings = store.model_copy(update={"reranker": "none", "fusion": fusion})
    result = RagPipeline(settings).ask("XR-17 coolant pump torque", retrieval="hybrid", top_k=4, generate=False)
    assert result.chunks[0].source == "pump.txt"
    scores = [c.fused_score for c in result.candidates]
    assert scores == sorted(scores, reverse=True)
    top = result.candidates[0]
    assert top.dense_rank == top.bm25_rank == 1  # both sides find the pump first
    expected = {"rrf": 2 / 61, "relative": 2.0}.get(fusion)  # distribution: each side adds at most 1
    if expected is None:
        assert 0 < top.fused_score <= 2.0
    else:
        assert top.fused_score == pytest.approx(expected, rel=1e-4)
