"""The read path: question → first retrieval (dense, BM25 or both fused) → cross-encoder rerank → top-n → answer.

>>> pipeline = RagPipeline(Settings())
>>> result = pipeline.ask("What is the refund policy?")
>>> [(c.retrieval_rank, c.rerank_rank) for c in result.chunks]
[(4, 1), (1, 2), ...]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from rag import abstain, catalog, followup, mark_memory
from rag.answer import LlmAnswerer, LlmError
from rag.extract import ExtractiveAnswer, extract_answer
from rag.feedback import collection_reranker
from rag.lexical import collection_holds, named_documents
from rag.limits import clean_question
from rag.embedders.models import Embedder, configured_embedder
from rag.rerank import Reranker, blend, load_reranker, sigmoid
from rag.mark_memory import Lent
from rag.retrieve import Candidate, FirstStage, retrieve, retrieve_named
from rag.settings import RerankBlend, RetrievalMode, Settings
from rag.statements import line_item_statements, named_statements, section_statement
from rag.store import KnowledgeBase
from rag.types import Abstention, AnswerSpan, AskResult, ChunkHit, NamedDocuments, StageTimings


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)


class RagPipeline:
    """Answers questions over one knowledge base with the models its settings name.

    Models load on first use and stay loaded for the process (see ``configured_embedder``/``load_reranker``).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def embedder(self) -> Embedder:
        s = self.settings
        return configured_embedder(s)

    @property
    def reranker(self) -> Reranker | None:
        return load_reranker(self.settings.reranker, self.settings.device, self.settings.rerank_max_length)

    def knowledge_base(self, collection: str | None = None) -> KnowledgeBase:
        """The collection, opened with the embedder it was built with (the settings' for a new one)."""
        return KnowledgeBase(self.settings, collection)

    def embedder_for(self, kb: KnowledgeBase) -> Embedder:
        s = self.settings
        return configured_embedder(s, kb.embed_model)

    def ask(
        self,
        question: str,
        *,
        collection: str | None = None,
        top_k: int | None = None,
        top_n: int | None = None,
        rerank: bool = True,
        retrieval: RetrievalMode | None = None,
        generate: bool = True,
        on_token: Callable[[str], None] | None = None,
        history: Sequence[Any] | None = None,
        sources: Sequence[str] | None = None,
        asker: str | None = None,
    ) -> AskResult:
        """Answer ``question``; ``rerank=False`` keeps the first retrieval's order (the "off" side of a demo).

        ``retrieval`` picks the first stage (default: the settings'): dense, bm25 or hybrid.
        ``generate=False`` stops after ranking (evaluation, benchmarks). ``on_token`` streams the LLM's answer.
        ``history``: the chat's earlier turns, oldest first (AskResults, or objects/dicts with ``question`` and
        ``answer``), for follow-up questions (:mod:`rag.followup`): with an LLM the question is rewritten to
        stand alone before retrieval; without, the previous question with this one is searched too and fused,
        and it counts in the ranking and the answer only as far as the follow-up leans on it
        (:func:`rag.followup.context_share`). ``sources``: ask only these documents (their ``source``, as
        ``rerank-rag docs`` lists them); None or empty asks the whole collection. ``asker``: who asks, as
        :func:`rag.mark_memory.marker` names a marker (``key:<key id>``, ``by:app``): their own "does not answer"
        marks lower chunks for them without a second opinion.
        """
        # every surface's question meets one rule here too: control characters out, then empty or too long fails
        question = clean_question(question, self.settings.max_question_chars)
        top_k = top_k or self.settings.top_k
        top_n = min(top_n or self.settings.top_n, top_k)
        kb = self.knowledge_base(collection)
        embedder = self.embedder_for(kb)  # loads on first use: not part of the timings
        reranker, rerank_skipped = self._reranker_for(question, rerank, kb.name)
        started = time.perf_counter()

        first_stage = retrieval or self.settings.retrieval
        searched, context, share = question, None, None
        if history and self.settings.llm_configured:
            searched = followup.rewrite_question(self.settings, question, history)
        elif history:
            context = followup.context_query(question, history)
            share = followup.context_share(question) if context else None
        sources = sorted(set(sources)) if sources else None
        statements, line_items = self._statements_first(searched)
        leads = statements or line_items
        first, named = self._first_stage(searched, kb, embedder, first_stage, top_k, sources, leads, not statements)
        if context:
            also, _ = self._first_stage(context, kb, embedder, first_stage, top_k, sources, leads, not statements)
            first = followup.fuse(first, also, top_k=top_k, rrf_k=self.settings.rrf_k,
                                  context_weight=followup.fusion_weight(share or 0.0))

        t = time.perf_counter()
        found, scored_at, lent = first.candidates, None, {}
        if reranker is not None and self.settings.feedback_memory_weight > 0:  # marks move chunks through the blend
            lent = mark_memory.lent_for(self.settings, kb, embedder, searched, asker)
            if lent:
                found, scored_at = mark_memory.join_lifted(kb, found, lent, self.settings.rerank_depth)
        candidates = self._rank(searched, found, reranker, self.settings.rerank_weight,
                                context=context if share else None, context_share=share or 0.0,
                                depth=self.settings.rerank_depth, blend_kind=self.settings.rerank_blend, lent=lent,
                                marks_weight=self.settings.feedback_memory_weight, scored_at=scored_at,
                                first_stage_count=len(first.candidates), leads_named=bool(statements))
        rerank_ms = _ms(t) if reranker else 0.0
        chunks = sorted(candidates, key=lambda c: c.final_rank)[:top_n]

        answer, mode, error, generate_ms, spans = "", "extractive", None, 0.0, []
        # decided before any answer, so that an LLM is told; an extractive answer decides again with its sentence
        # Not for a follow-up that leans on the chat ("And the motor?"): its scores are the chat's blended with its
        # own few words, evidence the decision was never fitted on (it warned on 7 of 14 such answered turns).
        quarters, held = (None, None) if share else collection_holds(kb, self.settings.data_dir, searched,
                                                                     abstain.entity_names(searched))
        doubt = None if share else abstain.decide(searched, chunks, candidates, quarters=quarters, names_held=held,
                                                  threshold=self.settings.abstain_threshold)
        if generate:
            t = time.perf_counter()
            # The LLM answers the user's own words with the chat before them; the extractive answer, which
            # reads no history, the question searched (standalone when rewritten).
            turns = followup.recent_turns(history) if self.settings.llm_configured else []
            answer, mode, error, spans, doubt = self._answer(
                question if turns else searched, chunks, on_token, reranker, turns, extract_question=searched,
                context=context if share else None, context_share=share or 0.0, doubt=doubt,
                candidates=candidates, named=named.sources if named else (), quarters=quarters, names_held=held)
            generate_ms = _ms(t)

        return AskResult(
            question=question,
            answer=answer,
            answer_mode=mode,
            reranked=reranker is not None,
            chunks=chunks,
            candidates=candidates,
            timings_ms=StageTimings(**first.timings_ms, rerank=rerank_ms, generate=generate_ms, total=_ms(started)),
            collection=kb.name,
            embedder=embedder.name,
            retrieval=first_stage,
            reranker=reranker.name if reranker else None,
            rerank_weight=self.settings.rerank_weight if reranker else None,
            rerank_blend=self.settings.rerank_blend if reranker else None,
            rerank_skipped=rerank_skipped,
            llm_model=self.settings.llm_model if mode == "llm" else None,
            error=error,
            low_confidence=doubt is not None and doubt.fires,
            low_confidence_reason=doubt.reason if doubt is not None else None,
            abstention=doubt,
            answer_spans=spans,
            searched_query=searched,
            context_query=context,
            context_share=share,
            sources=sources,
            named_documents=named,
            named_statements=sorted(statements),
            line_item_statements=sorted(line_items),
            quotes_other_language=bool(answer) and mode == "extractive"
            and catalog.question_script_language(question) != catalog.question_script_language(answer),
        )

    @staticmethod
    def _rank(question: str, found: list[Candidate], reranker: Reranker | None,
              rerank_weight: float = 1.0, context: str | None = None, depth: int | None = None,
              blend_kind: RerankBlend = "linear", context_share: float = 0.0, lent: dict[str, Lent] | None = None,
              marks_weight: float = 0.0, scored_at: list[int] | None = None,
              first_stage_count: int | None = None, leads_named: bool = True) -> list[ChunkHit]:
        """All candidates in first-stage order, with their rerank rank and scores when reranked. With a
        ``context`` query (an elliptical follow-up's previous question with it), a chunk's logit moves
        ``context_share`` of the way to the context's (:func:`rag.followup.blend`): the follow-up leads.
        ``depth``: only the first ``depth`` candidates are reranked (the cascade of ``Settings.rerank_depth``);
        the others keep their first-stage order below them, with no rerank or final score. The final order
        blends the reranker's logits with the first stage (:func:`rag.rerank.blend`); the rerank score shown
        is the readable one (``Reranker.readable``). ``lent``: what marks on near questions say of chunks
        (:mod:`rag.mark_memory`), mixed into that blend times ``marks_weight``; ``scored_at``: the candidates the
        reranker scores when not the top ``depth`` (lent ones below it too); the candidates from
        ``first_stage_count`` on are the ones marks brought in. ``leads_named``: the leading candidates stand in a
        statement the question names, else in one whose line item it asks for."""
        lent = lent or {}
        scored_at = scored_at if scored_at is not None else list(range(len(found[:depth] if depth else found)))
        scored = [found[i] for i in scored_at]
        at = {i: n for n, i in enumerate(scored_at)}  # a candidate's place among the scored
        logits = reranker.logits(question, [c.chunk.read_text for c in scored]) if reranker and scored else None
        if logits is not None and context and context_share:
            also = reranker.logits(context, [c.chunk.read_text for c in scored])
            logits = followup.blend(logits, also, context_share)
        rerank_scores = reranker.readable(logits) if logits is not None else None
        final_scores: list[float] | None = None
        marks: list[float] = []
        rerank_rank: dict[int, int] = {}
        if logits is not None:
            marks = [mark_memory.agreed(lent[c.chunk.chunk_id].score, rerank_scores[n]) if c.chunk.chunk_id in lent
                     else 0.0 for n, c in enumerate(scored)]
            final_scores = (rerank_scores if rerank_weight >= 1.0 and not (marks_weight and any(marks)) else
                            blend(logits, [c.score for c in scored], blend_kind, rerank_weight,
                                  confidence=sigmoid(max(logits)), marks=marks, marks_weight=marks_weight))
            # A stable sort: equal final scores keep their retrieval order; the unscored follow in theirs. The chunks
            # of a statement the question names stay ahead of the others (rag.statements).
            order = (sorted(scored_at, key=lambda i: (not found[i].leads, -final_scores[at[i]]))
                     + [i for i in range(len(found)) if i not in at])
            rerank_rank = {i: rank for rank, i in enumerate(order, 1)}

        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 6)

        def moved_by_marks(i: int, c: Candidate) -> bool:
            return final_scores is not None and i in at and c.chunk.chunk_id in lent and marks_weight > 0

        return [
            ChunkHit(
                chunk_id=c.chunk.chunk_id,
                doc_id=c.chunk.doc_id,
                source=c.chunk.source,
                page=c.chunk.page,
                text=c.chunk.text,
                doc_title=c.chunk.doc_title or None,
                section=c.chunk.section or None,
                context=c.chunk.context or None,
                retrieval_rank=i + 1,
                retrieval_score=round(c.score, 6),
                dense_rank=c.dense_rank,
                dense_score=rounded(c.dense_score),
                bm25_rank=c.bm25_rank,
                bm25_score=rounded(c.bm25_score),
                fused_rank=c.fused_rank,
                fused_score=rounded(c.fused_score),
                rerank_rank=rerank_rank.get(i),
                rerank_score=None if rerank_scores is None or i not in at else round(rerank_scores[at[i]], 6),
                final_score=None if final_scores is None or i not in at else round(final_scores[at[i]], 6),
                marks_score=round(marks[at[i]], 6) if moved_by_marks(i, c) else None,
                marked_question=lent[c.chunk.chunk_id].question if moved_by_marks(i, c) else None,
                joined_by_marks=first_stage_count is not None and i >= first_stage_count,
                in_named_statement=c.leads and leads_named,
                in_line_item_statement=c.leads and not leads_named,
            )
            for i, c in enumerate(found)
        ]

    def _answer(
        self, question: str, chunks: list[ChunkHit], on_token: Callable[[str], None] | None,
        reranker: Reranker | None = None, history: Sequence[tuple[str, str]] = (),
        extract_question: str | None = None, context: str | None = None, context_share: float = 0.0,
        doubt: Abstention | None = None, candidates: Sequence[ChunkHit] = (), named: Sequence[str] = (),
        quarters: tuple[float, list[str]] | None = None, names_held: tuple[float, list[str]] | None = None,
    ) -> tuple[str, str, str | None, list[AnswerSpan], Abstention | None]:
        """(answer, mode, error, spans, doubt): the LLM's answer (told of ``doubt`` when it fired), or the
        extractive one (its sentences chosen by the reranker, or the embedder without one, for
        ``extract_question``) when there is no LLM or it failed. The extractive answer decides ``doubt`` again
        with its quoted sentence's score; when it fires, the answer says the documents do not seem to answer
        and shows the closest passages instead of a quote (:func:`rag.abstain.unanswered_answer`)."""
        error = None
        if self.settings.llm_configured and chunks:
            warning = doubt.reason if doubt is not None and doubt.fires else None
            try:
                return (LlmAnswerer(self.settings).answer(question, chunks, on_token, history, doubt=warning),
                        "llm", None, [], doubt)
            except LlmError as failure:
                error = str(failure)
        asked = extract_question or question
        extracted = extract_answer(asked, chunks, reranker=reranker, embedder=self.embedder,
                                   context=context, context_share=context_share, named=named)
        if chunks and not context_share:
            score = abstain.sentence_score(asked, chunks, extracted.spans, reranker=reranker, embedder=self.embedder)
            doubt = abstain.decide(asked, chunks, candidates, sentence_score=score, quarters=quarters,
                                   names_held=names_held, threshold=self.settings.abstain_threshold)
        if doubt is not None and doubt.fires and chunks:
            return abstain.unanswered_answer(asked, chunks), "extractive", error, [], doubt
        return extracted.answer, "extractive", error, extracted.spans, doubt

    def reranker_for(self, collection: str | None = None) -> Reranker | None:
        """The reranker a collection uses: the one it was switched to after a feedback fine-tune
        (:func:`rag.feedback.collection_reranker`) unless the settings name one explicitly, else the settings'."""
        chosen = collection_reranker(self.settings, collection or self.settings.collection)
        if chosen is None:
            return self.reranker
        return load_reranker(chosen, self.settings.device, self.settings.rerank_max_length)

    def _first_stage(self, query: str, kb: KnowledgeBase, embedder: Embedder, mode: RetrievalMode, top_k: int,
                     sources: Sequence[str] | None,
                     statements: frozenset[str] = frozenset(),
                     line_items: bool = False) -> tuple[FirstStage, NamedDocuments | None]:
        """The first stage over ``sources`` (the asker's choice) or, when the question names documents by their
        identities (rag.doc_names), over those first; with the documents it named. The chunks of the
        ``statements`` it names lead (rag.statements); where they are the ones whose ``line_items`` it asks for,
        only the best ``Settings.line_item_leads`` of each."""
        share = self.settings.route_max_outside_share
        named = None if sources or share <= 0 else named_documents(
            kb, self.settings.data_dir, query, share, self.settings.route_min_inside_share)
        lead = (lambda chunk: kind if (kind := section_statement(chunk.section)) in statements else None
                ) if statements else None
        each = self.settings.line_item_leads if line_items else None
        if named is not None:
            return retrieve_named(query, kb, embedder, self.settings, mode=mode, top_k=top_k,
                                  named=named.sources, lead=lead, lead_each=each), named
        return retrieve(query, kb, embedder, self.settings, mode=mode, top_k=top_k, sources=sources,
                        lead=lead, lead_each=each), None

    def _statements_first(self, question: str) -> tuple[frozenset[str], frozenset[str]]:
        """(the statements ``question`` names, those whose line items it asks for where it names none): the
        chunks the first stage reads first (rag.statements; Settings.route_statements, line_item_leads)."""
        if not self.settings.route_statements:
            return frozenset(), frozenset()
        if named := named_statements(question):
            return named, frozenset()
        return frozenset(), line_item_statements(question) if self.settings.line_item_leads else frozenset()

    def _reranker_for(self, question: str, rerank: bool,
                      collection: str | None = None) -> tuple[Reranker | None, str | None]:
        """(the reranker for ``question``, or None; why none although ``rerank`` asked for one)."""
        reranker = self.reranker_for(collection) if rerank else None
        language = catalog.unread_language(reranker.info, question) if reranker else None
        if language is None or self.settings.rerank_every_language:
            return reranker, None
        return None, (f"{reranker.name} does not read {language}, so the first stage's order stands "
                      f"(RAG_RERANK_EVERY_LANGUAGE=true reranks anyway)")

    def extractive(self, question: str, chunks: list[ChunkHit], *, rerank: bool = True) -> ExtractiveAnswer:
        """The extractive answer from ``chunks``: what the pipeline answers without an LLM. Its sentences are
        scored by the words they share with the question, the embedder and, with ``rerank`` and a reranker
        that reads the question's language, the reranker (``rag.extract.score_sentences``)."""
        return extract_answer(question, chunks, reranker=self._reranker_for(question, rerank)[0],
                              embedder=self.embedder)
