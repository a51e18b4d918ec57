"""``/v1/feedback``: marks on chunks and answers, through the API (the app's Ask page writes the same records).

- ``POST /v1/feedback`` (write scope): ``{"collection", "question", "chunk_id", "label": "relevant" |
  "irrelevant"}``, or for the answer ``{"collection", "question", "answer": "good" | "wrong", "chunk_ids"?}``;
  marking the same chunk (or answer) of the same question again replaces the mark. A read key is refused (403):
  marks train the reranker every user of the collection gets.
- ``GET /v1/feedback?collection=C`` (read scope): the marks, newest first, in pages (``limit``, ``offset``).
- ``GET /v1/feedback/export?collection=C&format=questions|pairs`` (read scope): the ``eval --questions`` file or
  the training pairs, as JSON lines.
- ``DELETE /v1/feedback/{mark_id}?collection=C`` (write scope).

Every field is bounded by the schema before any of it is read; the question then meets the rule every
question meets (RAG_MAX_QUESTION_CHARS, control characters out).
"""

from __future__ import annotations

from typing import Literal

from fastapi import FastAPI, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from api.errors import ApiError
from api.keys import ApiKey
from api.service import Api, shown_model
from rag.feedback import MAX_ANSWER_CHUNKS, MAX_CHUNK_ID_CHARS, FeedbackError, FeedbackStore
from rag.mark_memory import marker

MAX_COLLECTION_CHARS = 512
MAX_PAGE = 1000


def asker(key: ApiKey | None) -> str:
    """Who asks, as marks name their maker (rag.mark_memory.marker): their own "does not answer" marks count
    for them without a second opinion."""
    return marker(key.key_id, key.name) if key is not None else marker("", "api")


class FeedbackRequest(BaseModel):
    """One mark: a chunk's (``chunk_id`` + ``label``) or the answer's (``answer``)."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not a silent no-op

    collection: str | None = Field(None, max_length=MAX_COLLECTION_CHARS,
                                   description="Default: the key's collection, else the server's.")
    question: str = Field(max_length=100_000, description="The question asked (RAG_MAX_QUESTION_CHARS applies).")
    chunk_id: str | None = Field(None, max_length=MAX_CHUNK_ID_CHARS, description="The chunk marked.")
    label: Literal["relevant", "irrelevant"] | None = Field(None, description="Whether the chunk answers it.")
    answer: Literal["good", "wrong"] | None = Field(None, description="A mark on the answer instead of a chunk.")
    chunk_ids: list[str] = Field(default_factory=list, max_length=MAX_ANSWER_CHUNKS,
                                 description="With `answer`: the chunks the answer was given.")
    reranker: str | None = Field(None, max_length=1000, description="What ranked the chunks; default: the "
                                 "reranker the collection uses.")


def install(app: FastAPI, api: Api, read, write) -> None:
    """Add the feedback routes; ``read``/``write`` are the server's key dependencies for those scopes."""

    def collection_of(name: str | None, key: ApiKey | None) -> str:
        collection = (name or "").strip() or api.default_collection(key)
        api.check_opens(key, collection)
        api.require_collection_name(collection)
        return collection

    def store() -> FeedbackStore:
        return FeedbackStore(api.settings)

    @app.post("/v1/feedback", tags=["feedback"])
    async def add_feedback(body: FeedbackRequest, key: ApiKey | None = write) -> dict:
        """Mark a chunk as answering the question or not, or the answer as good or wrong."""
        collection = collection_of(body.collection, key)
        question = api.question(body.question)

        def work() -> dict:
            api.require_collection(collection)
            reranker = body.reranker
            if reranker is None:
                used = api.pipeline.reranker_for(collection)
                reranker = used.name if used is not None else "none"
            try:
                mark = store().add(collection, question, chunk_id=body.chunk_id, label=body.label,
                                   answer=body.answer, chunk_ids=body.chunk_ids, reranker=reranker,
                                   by=key.name if key is not None else "api",
                                   key_id=key.key_id if key is not None else "")
            except FeedbackError as error:
                raise ApiError(400, str(error), "invalid_request_error") from error
            return {"mark": mark.public()}

        return await api.reads.run(work)

    @app.get("/v1/feedback", tags=["feedback"])
    async def list_feedback(collection: str | None = Query(None, max_length=MAX_COLLECTION_CHARS),
                            limit: int = Query(100, ge=1, le=MAX_PAGE), offset: int = Query(0, ge=0),
                            key: ApiKey | None = read) -> dict:
        """The collection's marks, newest first, and how many questions are marked enough to train on."""
        name = collection_of(collection, key)

        def work() -> dict:
            api.require_collection(name)
            feedback = store()
            marks = feedback.marks(name)
            return {"collection": name, "total": len(marks), "offset": offset,
                    "trainable_questions": len(feedback.trainable_questions(name)),
                    "data": [{**m.public(), "reranker": shown_model(m.reranker, key)}
                             for m in marks[offset:offset + limit]]}

        return await api.reads.run(work)

    @app.get("/v1/feedback/export", tags=["feedback"], response_class=PlainTextResponse)
    async def export_feedback(collection: str | None = Query(None, max_length=MAX_COLLECTION_CHARS),
                              format: Literal["questions", "pairs"] = "questions",  # noqa: A002 - the query name
                              key: ApiKey | None = read) -> PlainTextResponse:
        """`questions`: the file `rerank-rag eval --collection C --questions F` reads; `pairs`: training pairs
        (`rerank-rag reranker train --dataset F.jsonl`). JSON lines."""
        name = collection_of(collection, key)

        def work() -> str:
            api.require_collection(name)
            return store().questions_jsonl(name) if format == "questions" else store().pairs_jsonl(name)

        return PlainTextResponse(await api.reads.run(work), media_type="application/x-ndjson")

    @app.delete("/v1/feedback/{mark_id}", tags=["feedback"])
    async def delete_feedback(mark_id: str, collection: str | None = Query(None, max_length=MAX_COLLECTION_CHARS),
                              key: ApiKey | None = write) -> dict:
        """Delete one mark of the collection."""
        name = collection_of(collection, key)
        if len(mark_id) > 100:
            raise ApiError(404, "no such mark", "not_found")

        def work() -> dict:
            if not store().delete(name, [mark_id]):
                raise ApiError(404, f"no mark '{mark_id}' in the collection '{name}'", "not_found")
            return {"deleted": mark_id, "collection": name}

        return await api.reads.run(work)
