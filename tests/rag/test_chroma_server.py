"""Server mode: the same ingest and query against a real `chroma run` on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.pipeline import Ingestor
from rag.pipeline import RagPipeline
from rag.settings import Settings
from rag.store import StoreError, collection_names
from tests.helpers import REPO, free_port


def test_ingest_and_ask_through_a_chroma_server(chroma_server: tuple[str, int], tmp_path: Path) -> None:
    host, port = chroma_server
    settings = Settings(data_dir=tmp_path / "local", chroma_host=host, chroma_port=port, collection="server-kb")
    results = Ingestor(settings).ingest_paths([REPO / "data" / "sample"])
    assert {r.status for r in results} == {"ok"}
    assert "server-kb" in collection_names(settings)
    assert not (tmp_path / "local" / "chroma").exists(), "server mode must not write an embedded store"

    again = Ingestor(settings).ingest_paths([REPO / "data" / "sample"])
    assert {r.status for r in again} == {"skipped"}

    result = RagPipeline(settings).ask("How much is the home-office allowance?", top_k=5, top_n=2)
    assert result.collection == "server-kb" and len(result.candidates) == 5
    assert any("£300" in chunk.text for chunk in result.candidates)


def test_an_unreachable_server_is_one_clear_error(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, chroma_host="127.0.0.1", chroma_port=free_port())
    with pytest.raises(StoreError, match=r"cannot reach the Chroma server at 127\.0\.0\.1:\d+"):
        collection_names(settings)


# One app process (replica) as a subprocess: its own data dir (so its own BM25 copy), the shared server.
REPLICA = """
import json, sys
from rag.pipeline import RagPipeline
from rag.settings import Settings
settings = Settings(data_dir=sys.argv[1], chroma_host=sys.argv[2], chroma_port=int(sys.argv[3]),
                    collection="replicas", reranker="none")
pipeline = RagPipeline(settings)
for line in sys.stdin:  # one question per line, answered until stdin closes
    result = pipeline.ask(line.strip(), retrieval="bm25", top_k=3, generate=False)
    print(json.dumps([c.source for c in result.candidates]), flush=True)
"""


def test_two_app_processes_follow_the_server_with_their_own_bm25_copies(chroma_server: tuple[str, int],
                                                                          tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    from ingest.pipeline import SourceFile

    host, port = chroma_server
    writer = Settings(data_dir=tmp_path / "writer", chroma_host=host, chroma_port=port, collection="replicas")
    Ingestor(writer).ingest([SourceFile("first.txt", data=b"The zephyr valve is tightened to 9 Nm.")])
    replicas = [subprocess.Popen([sys.executable, "-c", REPLICA, str(tmp_path / f"replica-{n}"), host, str(port)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
                for n in (1, 2)]
    try:
        def ask(replica: subprocess.Popen, question: str) -> list[str]:
            replica.stdin.write(question + "\n")
            replica.stdin.flush()
            return json.loads(replica.stdout.readline())

        assert [ask(r, "zephyr valve") for r in replicas] == [["first.txt"], ["first.txt"]]
        # a document ingested through another process: each replica's next question sees it by BM25
        Ingestor(writer).ingest([SourceFile("second.txt", data=b"The quokka pump runs at 40 litres a minute.")])
        assert [ask(r, "quokka pump") for r in replicas] == [["second.txt"], ["second.txt"]]
        from rag.store import KnowledgeBase

        KnowledgeBase(writer).delete_document(KnowledgeBase(writer).find("first.txt").doc_id)
        assert [ask(r, "zephyr valve") for r in replicas] == [[], []]
        for n in (1, 2):  # each replica built its own copy, on its own disk
            assert (tmp_path / f"replica-{n}" / "bm25" / "replicas" / "CURRENT").is_file()
    finally:
        for replica in replicas:
            replica.stdin.close()
            replica.wait(timeout=60)
