"""The first retrieval: dense (embeddings in Chroma), BM25 (rag.lexical), or both fused by reciprocal rank.

Hybrid is reciprocal rank fusion (Cormack et al., 2009): each side ranks its own top ``first_stage_k``,
and a chunk scores ``sum(weight / (rrf_k + rank))`` over the sides that found it. Ranks, not scores, are
fused, because a cosine and a BM25 score live on unrelated scales. Written by hand (a few lines):
llama-index's ``QueryFusionRetriever`` ignores ``retriever_weights`` in RRF mode (0.14) and by default
asks an LLM for extra queries.

>>> rrf({"dense": ["a", "b"], "bm25": ["b", "c"]}, k=60)
[('b', 0.0327...), ('a', 0.0164...), ('c', 0.0161...)]
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from rag.models import Embedder
from rag.settings import RETRIEVAL_MODES, RetrievalMode, Settings
from rag.store import KnowledgeBase, StoredChunk


def rrf(rankings: Mapping[str, Sequence[str]], k: int = 60,
        weights: Mapping[str, float] | None = None) -> list[tuple[str, float]]:
    """Reciprocal rank fusion of ranked id lists: (id, fused score), best first; ties keep first-seen order."""
    scores: dict[str, float] = {}
    for side, ids in rankings.items():
        weight = 1.0 if weights is None else weights.get(side, 1.0)
        for rank, item in enumerate(ids, 1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda pair: -pair[1])


@dataclass
class Candidate:
    """A chunk the first stage returned, with what each side said of it (1-based ranks; None = not found)."""

    chunk: StoredChunk
    rank: int  # in the first stage's final order
    score: float  # the score that order was made by: cosine (dense), BM25 (bm25), RRF (hybrid)
    dense_rank: int | None = None
    dense_score: float | None = None
    bm25_rank: int | None = None
    bm25_score: float | None = None
    fused_rank: int | None = None
    fused_score: float | None = None


@dataclass
class FirstStage:
    """The candidates, best first, and the milliseconds each step took."""

    candidates: list[Candidate]
    timings_ms: dict[str, float] = field(default_factory=dict)


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)


def retrieve(question: str, kb: KnowledgeBase, embedder: Embedder, settings: Settings, *,
             mode: RetrievalMode, top_k: int) -> FirstStage:
    """The first stage's top ``top_k`` for ``question`` over ``kb``."""
    if mode not in RETRIEVAL_MODES:
        raise ValueError(f"retrieval must be one of {', '.join(RETRIEVAL_MODES)}, not {mode!r}")
    depth = top_k if mode != "hybrid" else max(top_k, settings.first_stage_k)
    timings: dict[str, float] = {"embed": 0.0, "search": 0.0, "bm25": 0.0, "fuse": 0.0}
    dense: list[StoredChunk] = []
    lexical: list[StoredChunk] = []
    if mode in ("dense", "hybrid"):
        t = time.perf_counter()
        query_embedding = embedder.embed_queries([question])[0]
        timings["embed"] = _ms(t)
        t = time.perf_counter()
        dense = kb.search(query_embedding, depth)
        timings["search"] = _ms(t)
    if mode in ("bm25", "hybrid"):
        from rag.lexical import lexical_search

        t = time.perf_counter()
        lexical = lexical_search(kb, settings.data_dir, question, depth)
        timings["bm25"] = _ms(t)

    by_id = {c.chunk_id: c for c in [*lexical, *dense]}
    dense_at = {c.chunk_id: (rank, c.score) for rank, c in enumerate(dense, 1)}
    bm25_at = {c.chunk_id: (rank, c.score) for rank, c in enumerate(lexical, 1)}
    if mode == "hybrid":
        t = time.perf_counter()
        fused = rrf({"dense": [c.chunk_id for c in dense], "bm25": [c.chunk_id for c in lexical]},
                    k=settings.rrf_k, weights={"dense": settings.dense_weight, "bm25": settings.bm25_weight})
        timings["fuse"] = _ms(t)
        order = fused[:top_k]
    else:
        order = [(c.chunk_id, c.score) for c in (dense if mode == "dense" else lexical)[:top_k]]

    candidates = []
    for rank, (chunk_id, score) in enumerate(order, 1):
        d_rank, d_score = dense_at.get(chunk_id, (None, None))
        b_rank, b_score = bm25_at.get(chunk_id, (None, None))
        candidates.append(Candidate(
            chunk=by_id[chunk_id], rank=rank, score=score,
            dense_rank=d_rank, dense_score=d_score, bm25_rank=b_rank, bm25_score=b_score,
            fused_rank=rank if mode == "hybrid" else None, fused_score=score if mode == "hybrid" else None,
        ))
    return FirstStage(candidates, timings)
