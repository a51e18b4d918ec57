"""The store under faults: concurrent first opens, repetitive documents, uncommitted chunks, a Chroma server
that goes away. Real embedded Chroma, a real `chroma run` subprocess, the packaged embedder."""

from __future__ import annotations

import threading
from pathlib import Path

from rag.settings import Settings
from rag.store import KnowledgeBase


def test_threads_opening_a_fresh_store_at_once_all_succeed(tmp_path: Path) -> None:
    # Four browser tabs on a new app server: each opens the knowledge base in its own thread.
    errors: list[str] = []
    for trial in range(3):
        settings = Settings(data_dir=tmp_path / f"store-{trial}")
        barrier = threading.Barrier(8)

        def open_store() -> None:
            try:
                barrier.wait()
                KnowledgeBase(settings).documents()
            except Exception as error:  # noqa: BLE001 - every failure is the finding
                errors.append(f"{type(error).__name__}: {error}")

        threads = [threading.Thread(target=open_store) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
