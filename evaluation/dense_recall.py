"""How much of the exact dense top-k the store's approximate (HNSW) search returns, on a collection's questions.

``rerank-rag bench`` reports it beside its speed figures (issue 34): the exact side is :class:`rag.dense_index.DenseIndex`
over the vectors Chroma stores, the approximate side is Chroma's own query, on the same question vectors.
"""

from __future__ import annotations

import time

from evaluation.metrics import percentiles
from rag.dense_index import dense_index
from rag.embedders.models import configured_embedder
from rag.settings import Settings
from rag.store import KnowledgeBase


def dense_recall(settings: Settings, collection: str, questions: list[str], k: int = 50) -> dict:
    """Recall@k of Chroma's HNSW against the exact top-k, the share of questions whose top 1 agrees, and each
    side's search p50/p95 in ms (embedding excluded: the same for both)."""
    kb = KnowledgeBase(settings, collection)
    vectors = configured_embedder(settings, kb.embed_model).embed_queries(questions)
    exact_index = dense_index(kb, settings.data_dir)
    recalls, agrees, times = [], [], {"exact": [], "hnsw": []}
    for vector in vectors:
        t = time.perf_counter()
        exact = [chunk_id for chunk_id, _ in exact_index.search(vector, k)]
        times["exact"].append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        approximate = [chunk.chunk_id for chunk in kb.search(vector, k)]
        times["hnsw"].append((time.perf_counter() - t) * 1000)
        recalls.append(len(set(exact) & set(approximate)) / max(1, len(exact)))
        agrees.append(exact[:1] == approximate[:1])
    out: dict = {"k": k, "questions": len(questions), "chunks": len(exact_index),
                 "hnsw_recall_at_k": round(sum(recalls) / max(1, len(recalls)), 4),
                 "top1_agrees": round(sum(agrees) / max(1, len(agrees)), 4)}
    for side, ms in times.items():
        p = percentiles(ms)
        out[f"{side}_p50_ms"], out[f"{side}_p95_ms"] = round(p.p50, 2), round(p.p95, 2)
    return out
