"""Server mode: the same ingest and query against a real `chroma run` on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.pipeline import Ingestor
from rag.pipeline import RagPipeline
from rag.settings import Settings
from rag.store import StoreError, collection_names
from tests.conftest import REPO, free_port


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
