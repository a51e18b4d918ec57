"""rerank-rag bench in smoke mode (one document, a few queries): the JSON's shape, never its speed."""

from __future__ import annotations

import json
from pathlib import Path

from evaluation.bench import targets
from rag.cli import main
from tests.helpers import write_dataset

REPO = Path(__file__).resolve().parents[2]


def test_bench_json_shape(tmp_path: Path, plumbing_reranker: str, capsys):
    dataset = write_dataset(tmp_path / "tiny")
    rc = main(["bench", "--data-dir", str(tmp_path / "store"), "--docs", str(REPO / "data" / "sample"),
               "--max-docs", "2", "--dataset", str(dataset), "--queries", "3", "--reranker", plumbing_reranker,
               "--json", "--quiet"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert {"ingest", "query", "rss_mb", "baseline", "ratios", "machine", "targets"} <= set(report)
    ingest = report["ingest"]
    assert ingest["files"] == 2 and ingest["chunks"] > 0 and ingest["pages"] > 0
    assert {"pages_per_s", "chunks_per_s", "wall_s", "raw_embedder", "vs_raw_embedder"} <= set(ingest)
    assert ingest["raw_embedder"]["chunks"] == ingest["chunks"]
    query = report["query"]
    assert query["queries"] == 3 and {"p50_ms", "p95_ms"} <= set(query)
    assert set(query["stages"]) == {"embed", "search", "rerank"}
    assert all({"p50", "p95"} == set(v) for v in query["stages"].values())
    base = report["baseline"]
    assert base["ingest"]["chunks"] > 0 and {"p50_ms", "p95_ms"} <= set(base["query"])
    assert base["reranker_backend"].startswith("torch") and base["rss_mb"] > 0
    assert {"query_p50_stock_over_ours", "ingest_ours_over_raw_embedder"} <= set(report["ratios"])
    assert set(report["targets"]) == {"query_p50_ms_le_150", "ingest_ge_90pct_raw_embedder", "query_ge_2x_stock"}
    # the bench's scratch stores are gone; the cached query index stays
    assert not any((tmp_path / "store" / "bench-tmp").iterdir())


def test_targets_are_judged_from_the_figures():
    report = {"query": {"wall_p50_ms": 120.0}, "ingest": {"vs_raw_embedder": 0.8},
              "ratios": {"query_p50_stock_over_ours": 2.5}}
    judged = targets(report)
    assert judged["query_p50_ms_le_150"]["met"] is True
    assert judged["ingest_ge_90pct_raw_embedder"]["met"] is False
    assert judged["query_ge_2x_stock"] == {"value": 2.5, "met": True}


def test_stock_reranker_for_an_onnx_only_folder(tmp_path: Path, plumbing_reranker: str, settings):
    import shutil

    import pytest

    from evaluation.stock import stock_reranker_path

    onnx_only = tmp_path / "onnx-only"
    (onnx_only / "onnx").mkdir(parents=True)
    shutil.copy(Path(plumbing_reranker) / "config.json", onnx_only / "config.json")
    (onnx_only / "onnx" / "model_qint8.onnx").write_bytes(b"not used")
    s = settings.model_copy(update={"reranker": str(onnx_only)})
    folder, note = stock_reranker_path(s, tmp_path)
    assert (Path(folder) / "model.safetensors").is_file() and "same architecture" in note
    # with the reranker's own torch weights, those are used
    assert stock_reranker_path(settings.model_copy(update={"reranker": plumbing_reranker}), tmp_path)[0] == plumbing_reranker
    # another architecture cannot be stood in for
    config = json.loads((onnx_only / "config.json").read_text())
    config["num_hidden_layers"] = 12
    (onnx_only / "config.json").write_text(json.dumps(config))
    with pytest.raises(RuntimeError, match="--stock-reranker"):
        stock_reranker_path(s, tmp_path / "other")
