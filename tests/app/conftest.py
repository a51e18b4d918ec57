"""Fixtures of the app's AppTest tests: an empty store, and the plumbing reranker set for the app."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty store for the app (AppTest runs the script in this process, so env vars reach it)."""
    store = tmp_path / "store"
    monkeypatch.setenv("RAG_DATA_DIR", str(store))
    return store


@pytest.fixture
def reranked(data_dir: Path, plumbing_reranker: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("RAG_RERANKER", plumbing_reranker)
    return plumbing_reranker
