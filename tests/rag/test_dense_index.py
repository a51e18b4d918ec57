"""The dense first stage returns what it found (issue 34): exact cosine ranking where the collection is small enough,
in the process that built it and after reopening, on an embedded store and on a Chroma server; its index kept in
step with ingest and delete; old collections still answering, and reindex moving them to the configured HNSW."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rag import dense_index
from rag.chroma_client import open_client
from rag.derived_index import CURRENT, MANIFEST
from rag.dense_index import DenseIndex, dense_search
from rag.settings import Settings
from rag.store import DocumentRecord, KnowledgeBase, doc_id_for
from tests.helpers import REPO

DIM, DOCS, PER_DOC, QUERIES, K = 48, 30, 100, 40, 50


def _clustered_vectors(count: int, seed: int) -> np.ndarray:
    """Vectors in tight clusters around a few centres: many near-ties, the case approximate search gets wrong."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, DIM))
    return (centres[rng.integers(0, 12, count)] + 0.08 * rng.normal(size=(count, DIM))).astype(np.float32)


def _write_collection(settings: Settings, vectors: np.ndarray) -> list[str]:
    """``DOCS`` committed documents of ``PER_DOC`` chunks each, with these vectors; returns the chunk ids in order."""
    kb = KnowledgeBase(settings)
    chunk_ids = []
    for d in range(DOCS):
        source = f"doc-{d:02d}.txt"
        doc_id, sha = doc_id_for(source), f"{d:064x}"
        ids = [f"{doc_id}:{sha[:8]}:{i:05d}" for i in range(PER_DOC)]
        metas = [{"doc_id": doc_id, "source": source, "content_sha256": sha, "page": 1,
                  "ingested_at": "2026-12-06T00:00:00+00:00"} for _ in ids]
        kb.write_document(DocumentRecord(doc_id, source, sha, 1, PER_DOC, "2026-12-06T00:00:00+00:00", 10),
                          ids, [f"text {i}" for i in ids], vectors[d * PER_DOC:(d + 1) * PER_DOC], metas)
        chunk_ids += ids
    return chunk_ids


def _exact(vectors: np.ndarray, chunk_ids: list[str], query: np.ndarray, k: int) -> list[str]:
    """The reference: cosine over every stored vector, ties broken by chunk id."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = (unit @ (query / np.linalg.norm(query))).astype(np.float32)
    return [chunk_ids[i] for i in sorted(range(len(chunk_ids)), key=lambda i: (-scores[i], chunk_ids[i]))[:k]]


_SEARCH_IN_A_NEW_PROCESS = """
import json, sys
import numpy as np
from rag.dense_index import dense_search
from rag.settings import Settings
from rag.store import KnowledgeBase
settings = Settings.model_validate_json(sys.argv[1])
queries = np.array(json.loads(sys.argv[2]), dtype=np.float32)
kb = KnowledgeBase(settings)
print(json.dumps([[c.chunk_id for c in dense_search(kb, settings, q, int(sys.argv[3]))] for q in queries]))
"""


def _search_in_a_new_process(settings: Settings, queries: np.ndarray) -> list[list[str]]:
    done = subprocess.run([sys.executable, "-c", _SEARCH_IN_A_NEW_PROCESS, settings.model_dump_json(),
                           json.dumps(queries.tolist()), str(K)], capture_output=True, text=True, cwd=REPO,
                          timeout=300, check=True)
    return json.loads(done.stdout)


@pytest.mark.parametrize("where", ["embedded", "server"])
def test_dense_results_equal_exact_cosine_where_built_and_after_reopening(
        tmp_path: Path, where: str, request: pytest.FixtureRequest) -> None:
    settings = Settings(data_dir=tmp_path / "store", collection=f"exact-{where}")
    if where == "server":
        host, port = request.getfixturevalue("chroma_server")
        settings = settings.model_copy(update={"chroma_host": host, "chroma_port": port})
    vectors = _clustered_vectors(DOCS * PER_DOC, seed=1)
    chunk_ids = _write_collection(settings, vectors)
    queries = _clustered_vectors(QUERIES, seed=2)
    expected = [_exact(vectors, chunk_ids, q, K) for q in queries]

    kb = KnowledgeBase(settings)
    assert [[c.chunk_id for c in dense_search(kb, settings, q, K)] for q in queries] == expected
    hit = dense_search(kb, settings, queries[0], 1)[0]
    assert hit.score == pytest.approx(float(vectors[chunk_ids.index(hit.chunk_id)] @ queries[0]
                                            / np.linalg.norm(vectors[chunk_ids.index(hit.chunk_id)])
                                            / np.linalg.norm(queries[0])), abs=1e-5)
    # another process, which reads the saved index instead of building it
    assert _search_in_a_new_process(settings, queries) == expected


def test_a_filtered_search_ranks_only_those_documents_and_as_exactly(settings: Settings) -> None:
    vectors = _clustered_vectors(DOCS * PER_DOC, seed=3)
    chunk_ids = _write_collection(settings, vectors)
    kb = KnowledgeBase(settings)
    query = _clustered_vectors(1, seed=4)[0]
    kept = [i for i, chunk_id in enumerate(chunk_ids) if chunk_id.startswith((doc_id_for("doc-03.txt"),
                                                                            doc_id_for("doc-17.txt")))]
    expected = _exact(vectors[kept], [chunk_ids[i] for i in kept], query, 20)
    found = dense_search(kb, settings, query, 20, sources=["doc-03.txt", "doc-17.txt"])
    assert [c.chunk_id for c in found] == expected
    assert {c.source for c in found} == {"doc-03.txt", "doc-17.txt"}


def _manifest(root: Path) -> dict:
    return json.loads((root / (root / CURRENT).read_text().strip() / MANIFEST).read_text())


def test_the_index_follows_ingest_and_delete(settings: Settings, tmp_path: Path) -> None:
    from ingest.pipeline import Ingestor

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "bikes.txt").write_text("The Kestrel e-bike battery charges in four and a half hours.")
    (folder / "tea.txt").write_text("Green tea is steeped at seventy degrees for two minutes.")
    ingestor = Ingestor(settings)
    assert all(r.status == "ok" for r in ingestor.ingest_paths([folder / "bikes.txt"]))
    root = dense_index._INDEXES.root(settings.data_dir, settings.collection)
    first = _manifest(root)
    assert first["chunks"] == 1  # built by the ingest, before any question

    assert all(r.status == "ok" for r in ingestor.ingest_paths([folder / "tea.txt"]))
    assert _manifest(root)["chunks"] == 2
    kb, query = KnowledgeBase(settings), ingestor.embedder.embed_queries(["how hot should the water be"])[0]
    assert [c.source for c in dense_search(kb, settings, query, 2)] == ["tea.txt", "bikes.txt"]

    kb.delete_document(doc_id_for("tea.txt"))  # no rebuild asked for: the next search finds its manifest stale
    assert [c.source for c in dense_search(kb, settings, query, 2)] == ["bikes.txt"]
    assert _manifest(root)["chunks"] == 1 and _manifest(root)["fingerprint"] == first["fingerprint"]


def test_an_old_collection_still_answers_and_reindex_moves_it_to_the_configured_hnsw(
        settings: Settings, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    from rag.cli import main

    monkeypatch.setenv("RAG_CHUNK_CONTEXT", "off")  # these chunks' texts have no document to find a context in

    # a collection as earlier versions made it: Chroma's default HNSW parameters, cosine in its metadata
    open_client(settings).create_collection(settings.collection, metadata={"hnsw:space": "cosine"},
                                            embedding_function=None)
    vectors = _clustered_vectors(DOCS * PER_DOC, seed=5)
    chunk_ids = _write_collection(settings, vectors)
    kb = KnowledgeBase(settings)
    assert kb.chunks.configuration["hnsw"]["max_neighbors"] != settings.hnsw_max_neighbors
    query = _clustered_vectors(1, seed=6)[0]
    exact = _exact(vectors, chunk_ids, query, 10)
    assert [c.chunk_id for c in dense_search(kb, settings, query, 10)] == exact
    approximate = settings.model_copy(update={"dense_exact_max_chunks": 0})  # HNSW: it answers, if approximately
    assert len(dense_search(kb, approximate, query, 10)) == 10

    assert main(["reindex", "--data-dir", str(settings.data_dir)]) == 0
    assert "HNSW parameters" in capsys.readouterr().out
    kb = KnowledgeBase(settings)
    hnsw = kb.chunks.configuration["hnsw"]
    assert (hnsw["max_neighbors"], hnsw["ef_construction"], hnsw["ef_search"]) == (
        settings.hnsw_max_neighbors, settings.hnsw_ef_construction, settings.hnsw_ef_search)
    assert [c.chunk_id for c in dense_search(kb, settings, query, 10)] == exact  # the same vectors, copied
    assert main(["reindex", "--data-dir", str(settings.data_dir)]) == 0
    assert "nothing to do" in capsys.readouterr().out


@pytest.mark.parametrize("where", ["embedded", "server"])
def test_new_collections_get_the_configured_hnsw_parameters(settings: Settings, where: str,
                                                            request: pytest.FixtureRequest) -> None:
    tuned = settings.model_copy(update={"hnsw_max_neighbors": 24, "hnsw_ef_construction": 150, "hnsw_ef_search": 120,
                                        "collection": f"fresh-{where}"})
    if where == "server":
        host, port = request.getfixturevalue("chroma_server")
        tuned = tuned.model_copy(update={"chroma_host": host, "chroma_port": port})
    hnsw = KnowledgeBase(tuned).chunks.configuration["hnsw"]
    assert (hnsw["space"], hnsw["max_neighbors"], hnsw["ef_construction"], hnsw["ef_search"]) == (
        "cosine", 24, 150, 120)


def test_vectors_replaced_by_a_reindex_are_searched_at_once(settings: Settings) -> None:
    """A reindex keeps every document and chunk id, so only the collection's generation says the vectors moved."""
    vectors = _clustered_vectors(DOCS * PER_DOC, seed=7)
    chunk_ids = _write_collection(settings, vectors)
    kb = KnowledgeBase(settings)
    query = _clustered_vectors(1, seed=8)[0]
    assert [c.chunk_id for c in dense_search(kb, settings, query, 10)] == _exact(vectors, chunk_ids, query, 10)
    rotated = np.roll(vectors, 1, axis=1)  # new vectors for the same texts, as another embedder would give
    by_text = {f"text {chunk_id}": rotated[i] for i, chunk_id in enumerate(chunk_ids)}
    kb.reembed("rotated", lambda texts: [by_text[t] for t in texts])
    assert [c.chunk_id for c in dense_search(kb, settings, query, 10)] == _exact(rotated, chunk_ids, query, 10)


def test_an_empty_collection_is_searched_to_nothing(settings: Settings) -> None:
    kb = KnowledgeBase(settings)
    assert dense_search(kb, settings, [1.0, 0.0], 5) == []
    assert len(DenseIndex.build([], [], [])) == 0


def test_a_half_written_index_folder_is_never_loaded(tmp_path: Path) -> None:
    index = DenseIndex.build(["b", "a"], np.eye(2, dtype=np.float32), ["y.txt", "x.txt"])
    index.save(tmp_path / "whole")
    loaded = DenseIndex.load(tmp_path / "whole")
    assert loaded.search([0.0, 1.0], 2) == [("a", 1.0), ("b", 0.0)]
    (tmp_path / "whole" / MANIFEST).unlink()
    with pytest.raises(dense_index.IndexUnusable):
        DenseIndex.load(tmp_path / "whole")
    with pytest.raises(ValueError, match="another model"):
        loaded.search([1.0, 0.0, 0.0], 1)


def _near_duplicate_dataset(root: Path, n: int = 400) -> Path:
    """Many documents that differ only in a few words and numbers: dense neighbours packed tight, where an
    approximate index's misses change the figures."""
    from tests.helpers import write_dataset

    colours, parts = ["red", "blue", "green", "black", "white", "grey"], ["valve", "pump", "gasket", "flange"]
    corpus = [(f"d{i}", f"{parts[i % 4]} {i}", f"The {colours[i % 6]} {parts[i % 4]} model {i} is rated for "
               f"{10 + i % 37} bar and {40 + i % 23} degrees, made in plant {i % 11}.") for i in range(n)]
    root = write_dataset(root, corpus)
    questions = [(f"q{i}", f"Which {parts[i % 4]} is {colours[i % 6]} and rated for {10 + i % 37} bar at "
                  f"{40 + i % 23} degrees?", f"d{i}") for i in range(0, n, n // 20)]
    (root / "queries.jsonl").write_text("".join(json.dumps({"id": q, "text": t}) + "\n" for q, t, _ in questions))
    (root / "qrels.tsv").write_text("".join(f"{q}\t{d}\t1\n" for q, _, d in questions))
    return root


def test_the_same_eval_gives_the_same_figures_whichever_process_built_the_index(tmp_path: Path) -> None:
    dataset = _near_duplicate_dataset(tmp_path / "valves")

    def figures(data_dir: Path) -> list[dict]:
        done = subprocess.run([sys.executable, "-m", "rag.cli", "eval", "--dataset", str(dataset), "--data-dir",
                               str(data_dir), "--retrieval", "dense", "--reranker", "none", "--embedder",
                               "all-MiniLM-L6-v2", "--top-k", "50", "--json", "--quiet"],
                              capture_output=True, text=True, cwd=REPO, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        keep = ("name", "hit_rate", "mrr", "recall_at_k")
        return [{key: run[key] for key in keep} for run in json.loads(done.stdout)["runs"]]

    built_here = figures(tmp_path / "a")  # this process embeds and writes the collection, then asks
    assert figures(tmp_path / "a") == built_here  # a second process reopens it
    assert figures(tmp_path / "b") == built_here  # another process builds its own
