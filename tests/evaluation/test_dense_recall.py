"""The bench's dense recall: HNSW's share of the exact top-k, on a real collection."""

from __future__ import annotations

from pathlib import Path

from evaluation.dense_recall import dense_recall
from evaluation.index import index_corpus
from rag.settings import Settings
from tests.helpers import QUERIES, write_dataset


def test_a_collection_small_enough_for_hnsw_to_be_exact_has_full_recall(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "store", embed_model="all-MiniLM-L6-v2")
    info = index_corpus(settings, write_dataset(tmp_path / "tiny"))
    out = dense_recall(settings, info.collection, [text for _, text, _ in QUERIES], k=3)
    assert (out["k"], out["questions"], out["chunks"]) == (3, len(QUERIES), 5)
    assert out["hnsw_recall_at_k"] == 1.0 and out["top1_agrees"] == 1.0
    assert out["exact_p95_ms"] >= out["exact_p50_ms"] >= 0 and out["hnsw_p95_ms"] >= out["hnsw_p50_ms"] >= 0
