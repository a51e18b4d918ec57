"""The first retrieval: dense (exact or Chroma's HNSW: rag.dense_index), BM25 (rag.lexical), or both fused.

Hybrid: each side ranks its own top ``first_stage_k``; :func:`fuse` merges the two lists. The default,
relative score fusion, scales each side's scores to [0, 1] over its own list (a cosine and a BM25 score
live on unrelated scales) and adds them: a side sure of its best hit (far above its others) outweighs a
side that finds nothing clearly, which reciprocal rank fusion (Cormack et al., 2009; ranks only) cannot
see. Measured on the dev suite against RRF in BENCHMARKS.md; RRF stays a setting. The formulas are
llama-index's ``QueryFusionRetriever`` modes (relative_score, reciprocal_rerank, dist_based_score),
written here in a few lines because ours fuse plain lists of stored chunks, not retrievers' node lists,
and because that class ignores ``retriever_weights`` in RRF mode (0.14) and by default asks an LLM for
extra queries.

>>> ranked = {"dense": [("a", 0.5), ("b", 0.25), ("x", 0.0)], "bm25": [("b", 12.0), ("c", 3.0)]}
>>> fuse("relative", ranked)
[('b', 1.5), ('a', 1.0), ('x', 0.0), ('c', 0.0)]
>>> [item for item, _ in fuse("rrf", ranked)]  # ranks only: BM25's weak second outranks dense's third
['b', 'a', 'c', 'x']
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field

from rag.dense_index import dense_search
from rag.embedders.models import Embedder
from rag.settings import FUSIONS, RETRIEVAL_MODES, Fusion, RetrievalMode, Settings
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


def _normalised(scores: Sequence[float], method: str) -> list[float]:
    """One side's scores on [0, 1]: min-max ("relative"), or mean -/+ 3 sigma clipped ("distribution")."""
    if not scores:
        return []
    if method == "relative":
        low, high = min(scores), max(scores)
    else:
        mean = sum(scores) / len(scores)
        sigma = (sum((s - mean) ** 2 for s in scores) / len(scores)) ** 0.5
        low, high = mean - 3 * sigma, mean + 3 * sigma
    if high <= low:
        return [1.0] * len(scores)
    return [min(1.0, max(0.0, (s - low) / (high - low))) for s in scores]


def fuse(method: Fusion, ranked: Mapping[str, Sequence[tuple[str, float]]], *, k: int = 60,
         weights: Mapping[str, float] | None = None) -> list[tuple[str, float]]:
    """Fuse each side's (id, score) list, best first, by ``method`` (one of :data:`FUSIONS`).

    "rrf" reads only the ranks. "relative" (Weaviate's relativeScoreFusion) and "distribution" (Qdrant's
    DBSF) put each side's scores on [0, 1] over its own list and add them, so a side whose best hit stands
    far above its others outweighs a side that finds nothing clearly; a chunk one side missed gets 0 there.
    """
    if method == "rrf":
        return rrf({side: [item for item, _ in pairs] for side, pairs in ranked.items()}, k=k, weights=weights)
    if method not in FUSIONS:
        raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, not {method!r}")
    scores: dict[str, float] = {}
    for side, pairs in ranked.items():
        weight = 1.0 if weights is None else weights.get(side, 1.0)
        for (item, _), value in zip(pairs, _normalised([s for _, s in pairs], method)):
            scores[item] = scores.get(item, 0.0) + weight * value
    return sorted(scores.items(), key=lambda pair: -pair[1])


# Where none of what the fusion reads leads (a statement's chunks, rag.statements), the lead is sought this many
# times deeper: a statement prints a line item once, in a row of figures, among the many pages that discuss it.
LEAD_REACH = 4


@dataclass
class Candidate:
    """A chunk the first stage returned, with what each side said of it (1-based ranks; None = not found)."""

    chunk: StoredChunk
    rank: int  # in the first stage's final order
    score: float  # the score that order was made by: cosine (dense), BM25 (bm25), the fused score (hybrid)
    dense_rank: int | None = None
    dense_score: float | None = None
    bm25_rank: int | None = None
    bm25_score: float | None = None
    fused_rank: int | None = None
    fused_score: float | None = None
    leads: bool = False  # stands in what the question names to read first (a statement: rag.statements)


@dataclass
class FirstStage:
    """The candidates, best first, and the milliseconds each step took."""

    candidates: list[Candidate]
    timings_ms: dict[str, float] = field(default_factory=dict)


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)


def retrieve(question: str, kb: KnowledgeBase, embedder: Embedder, settings: Settings, *,
             mode: RetrievalMode, top_k: int, sources: Sequence[str] | None = None,
             query_embedding: Sequence[float] | None = None,
             lead: Callable[[StoredChunk], Hashable | None] | None = None,
             lead_each: int | None = None) -> FirstStage:
    """The first stage's top ``top_k`` for ``question`` over ``kb``; with ``sources``, over those documents only
    (both sides filtered the same way, by the chunk's source). ``query_embedding``: the question's, when a search
    before this one already embedded it. ``lead``: what the question asks to read first (the statement it names or
    whose line item it asks for, rag.statements), as the group a chunk leads in (its statement's kind) or None:
    those of each side's ``first_stage_k`` (where none is, of ``LEAD_REACH`` times as many) lead the candidates, in
    the order found, at most ``lead_each`` of each group (None: all), if they are of the ``sources`` or, with none
    given, of the first hit's document (where the question named no document, another company's statement does
    not lead its own discussion)."""
    if mode not in RETRIEVAL_MODES:
        raise ValueError(f"retrieval must be one of {', '.join(RETRIEVAL_MODES)}, not {mode!r}")
    depth = top_k if mode != "hybrid" and lead is None else max(top_k, settings.first_stage_k)
    timings: dict[str, float] = {"embed": 0.0, "search": 0.0, "bm25": 0.0, "fuse": 0.0}
    if mode in ("dense", "hybrid") and query_embedding is None:
        t = time.perf_counter()
        query_embedding = embedder.embed_queries([question])[0]
        timings["embed"] = _ms(t)

    def search(k: int) -> tuple[list[StoredChunk], list[StoredChunk]]:
        """Each side's top ``k`` (dense, BM25), the time added to ``timings``."""
        dense, lexical = [], []
        if mode in ("dense", "hybrid"):
            t = time.perf_counter()
            dense = dense_search(kb, settings, query_embedding, k, sources)
            timings["search"] += _ms(t)
        if mode in ("bm25", "hybrid"):
            from rag.lexical import lexical_search

            t = time.perf_counter()
            lexical = lexical_search(kb, settings.data_dir, question, k, sources=sources)
            timings["bm25"] += _ms(t)
        return dense, lexical

    dense, lexical = search(depth)
    bm25_weight = settings.bm25_weight  # less when the collection lacks the question's words (bm25_coverage_full)
    if mode == "hybrid" and settings.bm25_coverage_full > 0:
        from rag.lexical import lexical_coverage

        t = time.perf_counter()
        bm25_weight *= min(1.0, lexical_coverage(kb, settings.data_dir, question) / settings.bm25_coverage_full)
        timings["bm25"] += _ms(t)

    by_id = {c.chunk_id: c for c in [*lexical, *dense]}
    dense_at = {c.chunk_id: (rank, c.score) for rank, c in enumerate(dense, 1)}
    bm25_at = {c.chunk_id: (rank, c.score) for rank, c in enumerate(lexical, 1)}
    if mode == "hybrid":
        t = time.perf_counter()
        fused = fuse(settings.fusion, {"dense": [(c.chunk_id, c.score) for c in dense],
                                       "bm25": [(c.chunk_id, c.score) for c in lexical]},
                     k=settings.rrf_k, weights={"dense": settings.dense_weight, "bm25": bm25_weight})
        timings["fuse"] = _ms(t)
        order = fused
    else:
        order = [(c.chunk_id, c.score) for c in (dense if mode == "dense" else lexical)]
    near = set(sources) if sources is not None else {by_id[chunk_id].source for chunk_id, _ in order[:1]}

    def leads_among(found: list[tuple[str, float]]) -> set[str]:
        leading, taken = set(), Counter()
        for chunk_id, _ in found:
            group = lead(by_id[chunk_id]) if by_id[chunk_id].source in near else None
            if group is not None and (lead_each is None or taken[group] < lead_each):
                leading.add(chunk_id)
                taken[group] += 1
        return leading

    leading = leads_among(order) if lead else set()
    if lead and not leading:
        # None among what the fusion read: sought LEAD_REACH times deeper. Those that lead join below the fused
        # (score 0: the fusion never read them), by the better rank either side gave them; the others do not.
        reach = depth * LEAD_REACH
        deep_dense, deep_lexical = search(reach)
        for side, found in ((dense_at, deep_dense), (bm25_at, deep_lexical)):
            for rank, chunk in enumerate(found, 1):
                if chunk.chunk_id not in by_id:
                    by_id[chunk.chunk_id] = chunk
                    side[chunk.chunk_id] = (rank, chunk.score)
        fused_ids = {chunk_id for chunk_id, _ in order}
        deeper = sorted((chunk_id for chunk_id in by_id if chunk_id not in fused_ids), key=lambda chunk_id: min(
            dense_at.get(chunk_id, (reach,))[0], bm25_at.get(chunk_id, (reach,))[0]))
        leading = leads_among([(chunk_id, 0.0) for chunk_id in deeper])
        order += [(chunk_id, 0.0) for chunk_id in deeper if chunk_id in leading]
    order = sorted(order, key=lambda item: item[0] not in leading)[:top_k]  # stable: each part in its order

    candidates = []
    for rank, (chunk_id, score) in enumerate(order, 1):
        d_rank, d_score = dense_at.get(chunk_id, (None, None))
        b_rank, b_score = bm25_at.get(chunk_id, (None, None))
        candidates.append(Candidate(
            chunk=by_id[chunk_id], rank=rank, score=score,
            dense_rank=d_rank, dense_score=d_score, bm25_rank=b_rank, bm25_score=b_score,
            fused_rank=rank if mode == "hybrid" else None, fused_score=score if mode == "hybrid" else None,
            leads=chunk_id in leading,
        ))
    return FirstStage(candidates, timings)


def retrieve_named(question: str, kb: KnowledgeBase, embedder: Embedder, settings: Settings, *,
                   mode: RetrievalMode, top_k: int, named: Sequence[str],
                   lead: Callable[[StoredChunk], Hashable | None] | None = None,
                   lead_each: int | None = None) -> FirstStage:
    """The first stage over the documents the question ``named`` (rag.doc_names) first, then, where they hold
    fewer than ``top_k`` chunks (a titled passage is one chunk), the rest of the collection's best after them: a
    question that names a document reads its chunks before any other's, and still gets ``top_k`` candidates."""
    t = time.perf_counter()  # embedded once for both searches
    embedding = embedder.embed_queries([question])[0] if mode != "bm25" else None
    embed_ms = _ms(t) if embedding is not None else 0.0
    first = retrieve(question, kb, embedder, settings, mode=mode, top_k=top_k, sources=named,
                     query_embedding=embedding, lead=lead, lead_each=lead_each)
    first.timings_ms["embed"] = embed_ms
    if len(first.candidates) >= top_k:
        return first
    # the rest of the collection fills after them unled: another document's statement does not pass the named ones
    rest = retrieve(question, kb, embedder, settings, mode=mode, top_k=top_k, query_embedding=embedding)
    seen = {c.chunk.chunk_id for c in first.candidates}
    candidates = first.candidates + [c for c in rest.candidates if c.chunk.chunk_id not in seen]
    for rank, candidate in enumerate(candidates[:top_k], 1):
        candidate.rank = rank
        if candidate.fused_rank is not None:
            candidate.fused_rank = rank
    timings = {step: round(first.timings_ms.get(step, 0.0) + ms, 2) for step, ms in rest.timings_ms.items()}
    return FirstStage(candidates[:top_k], timings)
