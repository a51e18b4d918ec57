"""The store under faults: concurrent first opens, repetitive documents, uncommitted chunks, a Chroma server
that goes away. Real embedded Chroma, a real `chroma run` subprocess, the packaged embedder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag.settings import Settings
from rag.store import KnowledgeBase, StoreError
from tests.helpers import REPO, SAMPLE, ChromaServer


def test_threads_opening_a_fresh_store_at_once_all_succeed(tmp_path: Path) -> None:
    # Four browser tabs on a new app server: each opens the knowledge base in its own thread.
    errors: list[str] = []

    def open_store(settings: Settings, barrier: threading.Barrier) -> None:
        try:
            barrier.wait()
            KnowledgeBase(settings).documents()
        except Exception as error:  # noqa: BLE001 - every failure is the finding
            errors.append(f"{type(error).__name__}: {error}")

    for trial in range(3):
        settings, barrier = Settings(data_dir=tmp_path / f"store-{trial}"), threading.Barrier(8)
        threads = [threading.Thread(target=open_store, args=(settings, barrier)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []


# ---- one repetitive document must not poison retrieval --------------------------------------------------
BATTERY = "How long does the battery take to charge?"


def _small_chunks(settings: Settings) -> Settings:
    """The samples in ~40 chunks rather than 9, so a top-20 has more than it needs to choose from."""
    return settings.model_copy(update={"chunk_size": 48, "chunk_overlap": 8})


def test_a_repetitive_file_is_stored_once_per_distinct_chunk_and_never_poisons_search(settings: Settings) -> None:
    from ingest.pipeline import Ingestor, SourceFile
    from rag.retrieve import retrieve

    settings = _small_chunks(settings)
    ingestor = Ingestor(settings)
    samples = ingestor.ingest_paths([SAMPLE])
    # One 600 kB line of one sentence: about 3,000 chunks, all but a couple identical. Thousands of
    # identical vectors broke Chroma's HNSW graph (every dense top-k was this file; after its delete, empty).
    (log,) = ingestor.ingest([SourceFile("log.md", data=b"The quick brown fox jumps over the lazy dog. " * 13_000)])
    assert log.status == "ok" and log.chunks <= 3 and log.repeated > 2000
    assert f"{log.repeated:,} repeated chunks left out" in log.line()
    assert ingestor.kb.count() == sum(r.chunks for r in samples) + log.chunks

    def dense_sources() -> list[str]:
        found = retrieve(BATTERY, ingestor.kb, ingestor.embedder, settings, mode="dense", top_k=20)
        return [c.chunk.source for c in found.candidates]

    sources = dense_sources()
    assert len(sources) == 20 and sources[0] == "product-faq.txt" and sources.count("log.md") <= log.chunks
    ingestor.kb.delete_document(log.doc_id)
    assert dense_sources()[:1] == ["product-faq.txt"] and len(dense_sources()) == 20


def test_uncommitted_chunks_never_take_dense_or_bm25_slots(settings: Settings) -> None:
    from ingest.pipeline import Ingestor
    from rag.lexical import lexical_search

    ingestor = Ingestor(_small_chunks(settings))
    ingestor.ingest_paths([SAMPLE])
    committed = ingestor.kb.count()
    # What a killed ingest leaves: chunks written, no registry record (young, so the repair keeps them).
    query = ingestor.embedder.embed_queries([BATTERY])[0]
    n = 30
    ingestor.kb.chunks.upsert(
        ids=[f"killed:{i}" for i in range(n)], embeddings=[list(map(float, query))] * n,
        documents=[f"The battery charges in {i} hours." for i in range(n)],
        metadatas=[{"doc_id": "killed", "source": "killed.txt", "content_sha256": "0" * 64,
                    "ingested_at": "2999-01-01T00:00:00+00:00", "chunk_index": i} for i in range(n)],
    )
    found = ingestor.kb.search(query, 20)
    assert len(found) == 20 and all(c.source != "killed.txt" for c in found)
    lexical = lexical_search(ingestor.kb, settings.data_dir, BATTERY, 20)
    assert lexical and all(c.source != "killed.txt" for c in lexical)
    assert ingestor.kb.count() == committed + n  # they were there all along


# ---- a Chroma server that goes away ---------------------------------------------------------------------
UNREACHABLE = r"cannot reach the Chroma server at 127\.0\.0\.1:\d+: the knowledge base is unreachable"


@pytest.fixture
def chroma(tmp_path: Path) -> Iterator[ChromaServer]:
    server = ChromaServer(tmp_path / "chroma-db").start()
    yield server
    server.kill()


def _server_settings(server: ChromaServer, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "local", chroma_host=server.host, chroma_port=server.port,
                    collection="faults", reranker="none")


def test_a_server_killed_mid_ingest_fails_each_remaining_file_alone(chroma: ChromaServer, tmp_path: Path) -> None:
    from ingest.pipeline import Ingestor

    settings = _server_settings(chroma, tmp_path)
    results = Ingestor(settings).ingest_paths([SAMPLE], on_result=lambda result: chroma.kill())
    assert [r.status for r in results] == ["ok"] + ["failed"] * (len(results) - 1) and len(results) >= 4
    for result in results[1:]:
        assert re.match(UNREACHABLE, result.reason) and "Traceback" not in result.line()

    chroma.start()  # same folder, same port: the store is as the first file left it
    kb = KnowledgeBase(settings)
    assert [r.source for r in kb.documents()] == [results[0].source]
    assert kb.count() == results[0].chunks
    again = {r.source: r.status for r in Ingestor(settings).ingest_paths([SAMPLE])}
    assert again == {results[0].source: "skipped", **{r.source: "ok" for r in results[1:]}}


def test_a_server_killed_mid_question_is_one_plain_error(chroma: ChromaServer, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient
    from streamlit.testing.v1 import AppTest

    from api.server import create_app
    from ingest.pipeline import Ingestor
    from rag.pipeline import RagPipeline

    settings = _server_settings(chroma, tmp_path)
    Ingestor(settings).ingest_paths([SAMPLE])
    pipeline = RagPipeline(settings)
    assert pipeline.ask(BATTERY, generate=False).candidates
    env = {"RAG_DATA_DIR": str(settings.data_dir), "RAG_CHROMA_HOST": chroma.host, "RAG_CHROMA_PORT": str(chroma.port),
           "RAG_COLLECTION": "faults", "RAG_RERANKER": "none", "RAG_SAMPLE_DIR": ""}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=180).run()
    assert not at.exception

    chroma.kill()
    # the library: one StoreError in plain words
    with pytest.raises(StoreError, match=UNREACHABLE):
        pipeline.ask(BATTERY, generate=False)
    # the API: a 503 that says so
    with TestClient(create_app(settings, warm=False), base_url="http://127.0.0.1") as client:
        reply = client.post("/v1/ask", json={"question": BATTERY})
    assert reply.status_code == 503 and re.match(UNREACHABLE, reply.json()["error"]["message"])
    # the Ask page: an error box, no traceback, no "Searching…" left hanging
    at.chat_input[0].set_value(BATTERY).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("could not be answered" in e.value and "cannot reach the Chroma server" in e.value for e in at.error)
    assert not any("Searching" in c.value for c in at.caption)
    # the CLI: one line on stderr, exit 2
    cli = subprocess.run([sys.executable, "-m", "rag.cli", "ask", BATTERY], cwd=REPO, capture_output=True,
                         text=True, timeout=300, env={**os.environ, **env}, check=False)
    assert cli.returncode == 2 and "Traceback" not in cli.stderr
    assert re.match("error: " + UNREACHABLE, cli.stderr.strip().splitlines()[-1]), cli.stderr

    chroma.start()  # back: the same pipeline answers again, with the same documents
    assert pipeline.ask(BATTERY, generate=False).candidates


def test_an_ingest_with_the_server_down_says_nothing_went_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from rag.cli import main
    from tests.helpers import free_port

    monkeypatch.setenv("RAG_CHROMA_HOST", "127.0.0.1")
    monkeypatch.setenv("RAG_CHROMA_PORT", str(free_port()))
    assert main(["--data-dir", str(tmp_path), "ingest", str(SAMPLE)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and re.match("error: " + UNREACHABLE, err) and err.rstrip().endswith("; no file was ingested")
