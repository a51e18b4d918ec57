"""The `rerank-rag` console script, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, SEC_PDFS

CLI = str(Path(sys.executable).parent / "rerank-rag")


def run(*args: str, data_dir: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args, "--data-dir", str(data_dir)], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env=env)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    data_dir = tmp_path_factory.mktemp("cli-store")
    bad = tmp_path_factory.mktemp("bad") / "broken.pdf"
    bad.write_bytes(b"%PDF-1.4 broken")
    done = run("ingest", str(REPO / "data" / "sample"), str(bad), str(SEC_PDFS / "2023 Q3 AAPL.pdf"), data_dir=data_dir)
    return data_dir, done


def test_ingest_prints_a_line_per_file_and_fails_after_the_rest(ingested) -> None:
    _, done = ingested
    lines = done.stdout.splitlines()
    assert done.returncode == 1
    assert [line.split(": ")[0] for line in lines[:5]] == [
        "display-messages.md", "employee-handbook.md", "product-faq.txt", "returns-and-service.pdf", "warranty.html"]
    assert all(line.split(": ")[1].startswith("ok ") and line.endswith(" chunks") for line in lines[:5])
    assert lines[5].startswith("broken.pdf: failed: not a readable PDF")
    assert lines[6].startswith("2023 Q3 AAPL.pdf: ok ")
    assert "Traceback" not in done.stderr


def test_ask_json_has_the_documented_shape(ingested) -> None:
    data_dir, _ = ingested
    done = run("ask", "What was Apple's total net sales for the three months ended July 1, 2023?",
               "--json", "--top-k", "12", "--top-n", "4", "--no-rerank", data_dir=data_dir)
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert {"question", "answer", "answer_mode", "reranked", "chunks", "candidates", "timings_ms"} <= set(payload)
    assert payload["answer_mode"] == "extractive" and payload["reranked"] is False
    assert len(payload["chunks"]) == 4 and len(payload["candidates"]) == 12
    fields = {"chunk_id", "doc_id", "source", "page", "text", "retrieval_rank", "retrieval_score",
              "dense_rank", "dense_score", "bm25_rank", "bm25_score", "fused_rank", "fused_score",
              "rerank_rank", "rerank_score", "final_score", "doc_title", "section", "context", "marks_score",
              "marked_question", "joined_by_marks", "in_named_statement", "in_line_item_statement"}
    assert all(set(chunk) == fields for chunk in payload["chunks"] + payload["candidates"])
    assert set(payload["timings_ms"]) == {"embed", "search", "bm25", "fuse", "rerank", "generate", "total"}
    assert payload["retrieval"] == "hybrid"  # the default first stage
    assert all(c["fused_rank"] == c["retrieval_rank"] for c in payload["candidates"])
    assert all(c["dense_rank"] is not None or c["bm25_rank"] is not None for c in payload["candidates"])
    assert [c["retrieval_rank"] for c in payload["chunks"]] == [1, 2, 3, 4]
    assert any("81,797" in c["text"] for c in payload["candidates"])
    # "Apple" and "July" name the filing (its text says them, the samples' do not): the first stage searched it alone
    assert payload["named_documents"] == {"sources": ["2023 Q3 AAPL.pdf"], "terms": ["2023", "Apple", "July"],
                                          "latest": False}
    assert {c["source"] for c in payload["candidates"]} == {"2023 Q3 AAPL.pdf"}


def test_ask_says_when_the_documents_do_not_answer_and_why(ingested) -> None:
    data_dir, _ = ingested
    done = run("ask", "What was Microsoft's revenue in Q3 2023?", data_dir=data_dir)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("(extractive answer) The documents do not seem to answer this question.")
    assert "The closest passages:" in done.stdout and "\n\n[1] " in done.stdout
    assert "warning: the documents may not answer this (" in done.stdout and "likely unanswered" in done.stdout
    # the period it names is the filing's: searched first, and said so
    assert "Searched first the documents the question names: 2023 Q3 AAPL.pdf (by: 2023, Q3)" in done.stdout
    answered = run("ask", "How long do I have to return a bike?", data_dir=data_dir)
    assert "do not seem to answer" not in answered.stdout and "warning:" not in answered.stdout
    assert "Searched first" not in answered.stdout


def test_ask_retrieval_bm25_fills_only_the_bm25_fields(ingested) -> None:
    data_dir, _ = ingested
    done = run("ask", "Apple total net sales three months ended July 1, 2023", "--json", "--retrieval", "bm25",
               "--no-rerank", data_dir=data_dir)
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["retrieval"] == "bm25"
    candidates = payload["candidates"]
    assert all(c["dense_rank"] is None and c["fused_rank"] is None and c["bm25_rank"] for c in candidates)
    # "net sales" is an income statement's row: its best chunk leads; the others keep BM25's order
    assert payload["line_item_statements"] == ["income"] and candidates[0]["in_line_item_statement"]
    assert [c["bm25_rank"] for c in candidates[1:]] == sorted(c["bm25_rank"] for c in candidates[1:])
    assert payload["candidates"][0]["source"] == "2023 Q3 AAPL.pdf"


def test_docs_delete_and_collections(ingested, tmp_path: Path) -> None:
    data_dir, _ = ingested
    listed = json.loads(run("docs", "--json", data_dir=data_dir).stdout)
    assert {d["source"] for d in listed} == {p.name for p in (REPO / "data" / "sample").iterdir()} | {"2023 Q3 AAPL.pdf"}
    apple = next(d for d in listed if d["source"] == "2023 Q3 AAPL.pdf")
    assert apple["pages"] >= 20 and apple["chunks"] > 20

    copy = tmp_path / "copy"
    import shutil
    shutil.copytree(data_dir, copy)
    deleted = run("delete", apple["doc_id"], data_dir=copy)
    assert deleted.returncode == 0 and deleted.stdout.startswith(f"deleted 2023 Q3 AAPL.pdf ({apple['chunks']} chunks)")
    assert "2023 Q3 AAPL.pdf" not in run("docs", data_dir=copy).stdout
    missing = run("delete", "no-such.pdf", data_dir=copy)
    assert missing.returncode == 1 and missing.stderr.strip() == "error: no document 'no-such.pdf' in collection 'default'"
    assert run("collections", data_dir=copy).stdout.split() == ["default"]


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    done = run("ask", "hello", "--reranker", str(tmp_path / "no-such-model"), data_dir=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: reranker '{tmp_path / 'no-such-model'}': no such folder."]
    bad = run("ask", "hello", "--top-k", "0", data_dir=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: invalid settings: top_k: Input should be greater than or equal to 1"
    weight = run("ask", "hello", "--rerank-weight", "2", data_dir=tmp_path)
    assert weight.returncode == 2
    assert weight.stderr.strip() == "error: invalid settings: rerank_weight: Input should be less than or equal to 1"
    debug = run("ask", "hello", "--reranker", str(tmp_path / "nope"), "--debug", data_dir=tmp_path)
    assert "Traceback" in debug.stderr


def test_ask_says_which_statement_it_read_first(ingested) -> None:
    """A question that names a financial statement: the filing's statement page leads, and the CLI says why."""
    data_dir, _ = ingested
    asked = "What were Apple's total assets at the end of the quarter ended July 1, 2023? Base it on the balance sheet."
    done = run("ask", asked, "--json", data_dir=data_dir)
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["named_statements"] == ["balance sheet"]
    first = payload["chunks"][0]
    assert first["in_named_statement"] and first["section"].endswith("CONDENSED CONSOLIDATED BALANCE SHEETS (Unaudited)")
    assert "Total assets" in first["text"] and "Total assets" in payload["answer"]
    shown = run("ask", asked, data_dir=data_dir)
    assert "Read first the financial statements the question names: balance sheet" in shown.stdout
