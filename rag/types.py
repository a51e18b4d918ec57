"""The typed result that travels from the pipeline to the CLI and the UI.

Everything a page shows is here, computed once by the pipeline: every stage's ranks, scores and
timings. ``AskResult.public_json()`` is the CLI's ``--json`` output and the HTTP API's answer.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from rag.statements import section_statement

AnswerMode = Literal["llm", "extractive"]


class ChunkHit(BaseModel):
    """One chunk as the query saw it: where it came from and where each stage ranked it (1-based)."""

    chunk_id: str
    doc_id: str
    source: str
    page: int | None = None
    text: str
    doc_title: str | None = Field(None, description="The title of the chunk's document, found at ingest (its "
                                  "cover, metadata or first heading; ingest.identity); null for older collections.")
    section: str | None = Field(None, description="The section path the chunk sits in (\"Part I > Item 2\"); null "
                                "where the document has no headings.")
    context: str | None = Field(None, description="The line the embedder, BM25 and the reranker read before the "
                                "text (the document's identity and the section; rag.chunk_context); never quoted.")
    retrieval_rank: int = Field(description="Rank after the first stage (the fused rank in hybrid retrieval).")
    retrieval_score: float = Field(
        description="The first stage's score: cosine similarity (dense), BM25 (bm25), the fused score (hybrid, "
        "see RAG_FUSION).")
    dense_rank: int | None = Field(None, description="Rank in the dense search; null when it did not run or find it.")
    dense_score: float | None = Field(None, description="Cosine similarity of question and chunk embeddings.")
    bm25_rank: int | None = Field(None, description="Rank in the BM25 search; null when it did not run or find it.")
    bm25_score: float | None = None
    fused_rank: int | None = Field(None, description="Rank after fusing dense and BM25; null unless hybrid.")
    fused_score: float | None = None
    rerank_rank: int | None = None
    rerank_score: float | None = Field(
        None, description="Cross-encoder relevance as people read it: for catalog rerankers with a calibration "
        "(the default) the probability that the chunk is relevant, fitted on dev data; else sigmoid(logit). "
        "null when not reranked.")
    final_score: float | None = Field(
        None, description="The score that set the final order: the rerank score, or with rerank_weight < 1 its "
        "blend with the retrieval score (AskResult.rerank_blend says how: rag.rerank.blend); null when not reranked.")
    marks_score: float | None = Field(
        None, description="What marks on questions alike in meaning lent the chunk in the final order, -1 to 1: "
        "above 0 marked as answering them, below 0 as not, weighed by how alike (rag.mark_memory); null: no mark "
        "reached it.")
    marked_question: str | None = Field(None, description="The marked question, alike to this one, that weighed "
                                        "most in marks_score.")
    joined_by_marks: bool = Field(False, description="The first stage did not find the chunk: marks on a question "
                                  "alike to this one brought it in.")
    in_named_statement: bool = Field(False, description="The chunk stands in a financial statement the question "
                                     "names (\"per the balance sheet\"), whose chunks lead the candidates "
                                     "(rag.statements; AskResult.named_statements).")
    in_line_item_statement: bool = Field(False, description="The chunk stands in the financial statement that "
                                         "prints a line item the question asks for without naming a statement "
                                         "(\"total assets\": the balance sheet), one of the best such chunks, which "
                                         "lead the candidates (AskResult.line_item_statements).")

    @property
    def final_rank(self) -> int:
        return self.rerank_rank if self.rerank_rank is not None else self.retrieval_rank

    @property
    def rank_change(self) -> int | None:
        """Places gained by reranking (positive = moved up); None when not reranked."""
        return None if self.rerank_rank is None else self.retrieval_rank - self.rerank_rank

    @property
    def movement(self) -> str:
        """Rank change as shown in tables: "▲3" (moved up 3), "▼2", "=" (kept its place), "" when not reranked."""
        change = self.rank_change
        if change is None:
            return ""
        return "=" if change == 0 else (f"▲{change}" if change > 0 else f"▼{-change}")

    @property
    def mark_note(self) -> str:
        """How marks moved the chunk, in words: "" when none did."""
        if not self.marks_score:
            return ""
        return ("marked helpful for a similar question" if self.marks_score > 0
                else "marked as not answering a similar question")

    @property
    def found_by(self) -> str:
        """Which first-stage search found the chunk: "dense", "bm25" or "both"; "marks" when marks brought it."""
        if self.joined_by_marks:
            return "marks"
        if self.dense_rank is not None and self.bm25_rank is not None:
            return "both"
        return "bm25" if self.bm25_rank is not None else "dense"

    @property
    def situated(self) -> str:
        """The document's title and the chunk's section as shown beside the source: "ACME INC. › Item 2"."""
        return " › ".join(part for part in (self.doc_title, self.section) if part)

    @property
    def citation(self) -> str:
        return f"{self.source}, p. {self.page}" if self.page is not None else self.source


def best_rerank_score(chunks: list[ChunkHit]) -> float | None:
    """The highest rerank score among ``chunks``; None when none was reranked."""
    return max((c.rerank_score for c in chunks if c.rerank_score is not None), default=None)


class AnswerSpan(BaseModel):
    """A sentence the answer quoted: where it sits in the text of the chunk it cites."""

    chunk: int = Field(description="The citation number [n] of the chunk (1-based, in ``chunks``).")
    start: int = Field(description="Offset of the sentence's first character in the chunk's text.")
    end: int = Field(description="Offset just past its last character.")


class Abstention(BaseModel):
    """The decision whether the documents answer the question (:mod:`rag.abstain`), with its evidence."""

    fires: bool = Field(description="The documents do not seem to answer: the answer says so.")
    probability: float | None = Field(
        None, description="The fitted model's probability that the documents do not answer (null: nothing found).")
    threshold: float | None = Field(None, description="The operating point it fires at (rag/abstain.json).")
    family: str = Field(description="Which evidence decided: reranked, first_stage (not reranked) or none.")
    model: str | None = Field(None, description="The fitted model used: the family, +sentence when an "
                              "extractive answer's sentence score counted.")
    features: dict[str, float | None] = Field(default_factory=dict, description="The evidence, as the model read it.")
    reason: str | None = Field(None, description="Why it fired, in words; null when it did not.")


class NamedDocuments(BaseModel):
    """The documents a question names by their identities (rag.doc_names): the first stage searched these first
    (only these, where they hold top-k chunks)."""

    sources: tuple[str, ...] = Field(description="The documents searched (their sources).")
    terms: tuple[str, ...] = Field(description="The question's words that named them: their identities carry them "
                                   "and the other documents' text seldom uses them.")
    latest: bool = Field(False, description="The question asked for the latest: the newest-dated of them kept.")

    def describe(self) -> str:
        """One line for people: which documents were searched first, and the words that named them."""
        shown = ", ".join(self.sources[:5]) + (f" and {len(self.sources) - 5} more" if len(self.sources) > 5 else "")
        why = ", ".join(self.terms) + ("; the latest" if self.latest else "")
        return f"Searched first the documents the question names: {shown} (by: {why})"


class StageTimings(BaseModel):
    """Milliseconds spent in each stage of one query."""

    embed: float = 0.0
    search: float = 0.0
    bm25: float = 0.0
    fuse: float = 0.0
    rerank: float = 0.0
    generate: float = 0.0
    total: float = 0.0


class AskResult(BaseModel):
    """One question answered: the answer, the chunks behind it, and how they were chosen.

    ``chunks`` are the top-n given to the answer, in final order, cited as [1], [2], ...;
    ``candidates`` are all top-k from the first retrieval, in retrieval order, with every stage's ranks.
    """

    question: str
    answer: str
    answer_mode: AnswerMode
    reranked: bool
    chunks: list[ChunkHit]
    candidates: list[ChunkHit]
    timings_ms: StageTimings
    collection: str
    embedder: str
    retrieval: str = Field("dense", description="The first stage: dense, bm25 or hybrid.")
    reranker: str | None = None
    rerank_weight: float | None = Field(None, description="Weight of the rerank score in the final order; null when not reranked.")
    rerank_blend: str | None = Field(None, description="How rerank_weight mixed the reranker into the final order "
                                     "(linear, rrf, confident); null when not reranked.")
    rerank_skipped: str | None = Field(
        None, description="Why the chunks were not reranked although rerank was on: the reranker does not read "
        "the question's language (Settings.rerank_every_language).")
    llm_model: str | None = None
    error: str | None = Field(None, description="Why the LLM answer failed; the answer is then extractive.")
    low_confidence: bool = Field(False, description="The documents do not seem to answer the question (the "
                                 "abstention decision, rag.abstain); the answer then says so.")
    low_confidence_reason: str | None = Field(None, description="Why low_confidence fired, in words.")
    abstention: Abstention | None = Field(None, description="The abstention decision and the evidence it read.")
    answer_spans: list[AnswerSpan] = Field(
        default_factory=list, description="The sentences an extractive answer quoted, as offsets into its cited "
        "chunks' text (empty for an LLM answer).")
    searched_query: str | None = Field(
        None, description="What the first retrieval searched for and the reranker read: the question, or in a "
        "chat a follow-up rewritten by the LLM to stand alone.")
    context_query: str | None = Field(
        None, description="In a chat without an LLM: the previous question with this one, searched too and fused "
        "with the question's own results.")
    context_share: float | None = Field(
        None, description="In a chat without an LLM: the share of the rerank and sentence scores the context query "
        "gave (0 for a follow-up that stands alone, 0.5 for one that leaves out what the chat said); null otherwise.")

    quotes_other_language: bool = Field(
        False, description="The extractive answer quotes text in another script than the question's (a Chinese "
        "question answered from English passages, or the reverse).")
    sources: list[str] | None = Field(
        None, description="The documents the question was asked of (their sources); null: the whole collection.")
    named_documents: NamedDocuments | None = Field(
        None, description="The documents the question named, which the first stage searched first (Settings."
        "route_max_outside_share); null when it named none or the asker chose the documents.")
    named_statements: list[str] = Field(
        default_factory=list, description="The financial statements the question names (\"income\", \"balance "
        "sheet\", \"cash flows\", ...), whose chunks were read first (Settings.route_statements; rag.statements).")
    line_item_statements: list[str] = Field(
        default_factory=list, description="Where the question names no statement: those that print a line item it "
        "asks for (\"total assets\": balance sheet), whose best chunks were read first (Settings.line_item_leads).")

    def public_json(self) -> dict:
        """The result as ``rerank-rag ask --json`` prints it and the HTTP API returns it (JSON-ready)."""
        return self.model_dump(mode="json", include=set(PUBLIC_FIELDS))

    def statements_read_first(self) -> str | None:
        """One line for people: the statements whose chunks were read first (those the question names, or those that
        print a line item it asks for); None: none led."""
        named = sorted({section_statement(c.section) or "" for c in self.candidates if c.in_named_statement})
        if named:
            return "Read first the financial statements the question names: " + ", ".join(named)
        asked = sorted({section_statement(c.section) or "" for c in self.candidates if c.in_line_item_statement})
        return "Read first the financial statements that print what the question asks for: " + ", ".join(
            asked) if asked else None

    @property
    def rerank_cost_ms(self) -> float:
        return self.timings_ms.rerank

    @property
    def best_rerank_score(self) -> float | None:
        """The highest rerank score among the returned chunks (what ``low_confidence`` compares)."""
        return best_rerank_score(self.chunks)

    @property
    def blended(self) -> bool:
        """The final order mixes the rerank and retrieval scores (rerank_weight < 1)."""
        return self.rerank_weight is not None and self.rerank_weight < 1.0

    @property
    def reranked_count(self) -> int:
        """How many candidates the reranker scored (the cascade's depth, or fewer candidates)."""
        return sum(1 for c in self.candidates if c.rerank_score is not None)

    def changed_against(self, other: AskResult) -> int:
        """How many of this result's returned chunks the ``other`` result did not return (two sides of Compare)."""
        theirs = {c.chunk_id for c in other.chunks}
        return sum(1 for c in self.chunks if c.chunk_id not in theirs)

    @property
    def promoted(self) -> int:
        """How many returned chunks the first retrieval alone would have left out of the top-n."""
        return sum(1 for c in self.chunks if c.retrieval_rank > len(self.chunks))


# The fields of AskResult's public JSON (``rerank-rag ask --json``, the HTTP API), in one place.
PUBLIC_FIELDS: frozenset[str] = frozenset({
    "question", "answer", "answer_mode", "reranked", "chunks", "candidates", "timings_ms", "collection", "embedder",
    "retrieval", "reranker", "rerank_weight", "rerank_blend", "rerank_skipped", "error", "low_confidence", "low_confidence_reason", "abstention", "answer_spans", "searched_query",
    "context_query", "context_share", "sources", "named_documents", "named_statements", "line_item_statements",
    "quotes_other_language",
})
