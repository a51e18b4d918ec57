"""The read path: question → embed → top-k from Chroma → cross-encoder rerank → top-n → answer.

>>> pipeline = RagPipeline(Settings())
>>> result = pipeline.ask("What is the refund policy?")
>>> [(c.retrieval_rank, c.rerank_rank) for c in result.chunks]
[(4, 1), (1, 2), ...]
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rag.answer import LlmAnswerer, LlmError, extractive_answer
from rag.models import Embedder, load_embedder
from rag.rerank import Reranker, interpolate, load_reranker
from rag.settings import Settings
from rag.store import KnowledgeBase, StoredChunk
from rag.types import AskResult, ChunkHit, StageTimings


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)


class RagPipeline:
    """Answers questions over one knowledge base with the models its settings name.

    Models load on first use and stay loaded for the process (see ``load_embedder``/``load_reranker``).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def embedder(self) -> Embedder:
        s = self.settings
        return load_embedder(s.embed_model, s.device, s.embed_batch_size)

    @property
    def reranker(self) -> Reranker | None:
        return load_reranker(self.settings.reranker, self.settings.device, self.settings.rerank_max_length)

    def knowledge_base(self, collection: str | None = None) -> KnowledgeBase:
        return KnowledgeBase(self.settings, collection, embed_model=self.embedder.name)

    def ask(
        self,
        question: str,
        *,
        collection: str | None = None,
        top_k: int | None = None,
        top_n: int | None = None,
        rerank: bool = True,
        generate: bool = True,
        on_token: Callable[[str], None] | None = None,
    ) -> AskResult:
        """Answer ``question``; ``rerank=False`` keeps the first retrieval's order (the "off" side of a demo).

        ``generate=False`` stops after ranking (evaluation, benchmarks). ``on_token`` streams the LLM's answer.
        """
        question = question.strip()
        if not question:
            raise ValueError("the question is empty")
        top_k = top_k or self.settings.top_k
        top_n = min(top_n or self.settings.top_n, top_k)
        kb = self.knowledge_base(collection)  # loads the embedder on first use: not part of the timings
        reranker = self.reranker if rerank else None
        started = time.perf_counter()

        t = time.perf_counter()
        query_embedding = self.embedder.embed_queries([question])[0]
        embed_ms = _ms(t)

        t = time.perf_counter()
        found = kb.search(query_embedding, top_k)
        search_ms = _ms(t)

        t = time.perf_counter()
        candidates = self._rank(question, found, reranker, self.settings.rerank_weight)
        rerank_ms = _ms(t) if reranker else 0.0
        chunks = sorted(candidates, key=lambda c: c.final_rank)[:top_n]

        answer, mode, error, generate_ms = "", "extractive", None, 0.0
        if generate:
            t = time.perf_counter()
            answer, mode, error = self._answer(question, chunks, on_token)
            generate_ms = _ms(t)

        best_rerank = max((c.rerank_score for c in chunks if c.rerank_score is not None), default=None)
        return AskResult(
            question=question,
            answer=answer,
            answer_mode=mode,
            reranked=reranker is not None,
            chunks=chunks,
            candidates=candidates,
            timings_ms=StageTimings(
                embed=embed_ms, search=search_ms, rerank=rerank_ms, generate=generate_ms, total=_ms(started)
            ),
            collection=kb.name,
            embedder=self.embedder.name,
            reranker=reranker.name if reranker else None,
            rerank_weight=self.settings.rerank_weight if reranker else None,
            llm_model=self.settings.llm_model if mode == "llm" else None,
            error=error,
            low_confidence=best_rerank is not None and best_rerank < self.settings.low_confidence_score,
        )

    @staticmethod
    def _rank(question: str, found: list[StoredChunk], reranker: Reranker | None,
              rerank_weight: float = 1.0) -> list[ChunkHit]:
        """All candidates in retrieval order, with their rerank rank and scores when reranked."""
        rerank_scores = reranker.score(question, [chunk.text for chunk in found]) if reranker and found else None
        final_scores: list[float] | None = None
        rerank_rank: dict[int, int] = {}
        if rerank_scores is not None:
            final_scores = (rerank_scores if rerank_weight >= 1.0 else
                            interpolate(rerank_scores, [chunk.score for chunk in found], rerank_weight))
            # A stable sort: equal final scores keep their retrieval order.
            order = sorted(range(len(found)), key=lambda i: -final_scores[i])
            rerank_rank = {i: rank for rank, i in enumerate(order, 1)}
        return [
            ChunkHit(
                chunk_id=chunk.chunk_id,
                doc_id=chunk.doc_id,
                source=chunk.source,
                page=chunk.page,
                text=chunk.text,
                retrieval_rank=i + 1,
                retrieval_score=round(chunk.score, 6),
                rerank_rank=rerank_rank.get(i),
                rerank_score=None if rerank_scores is None else round(rerank_scores[i], 6),
                final_score=None if final_scores is None else round(final_scores[i], 6),
            )
            for i, chunk in enumerate(found)
        ]

    def _answer(
        self, question: str, chunks: list[ChunkHit], on_token: Callable[[str], None] | None
    ) -> tuple[str, str, str | None]:
        """(answer, mode, error): the LLM's answer, or the extractive one when there is no LLM or it failed."""
        error = None
        if self.settings.llm_configured and chunks:
            try:
                return LlmAnswerer(self.settings).answer(question, chunks, on_token), "llm", None
            except LlmError as failure:
                error = str(failure)
        return extractive_answer(question, chunks, self.embedder), "extractive", error
