"""Request bodies of the HTTP API. They validate what comes in and document it at ``/docs``.

Responses are built from the library's own types: :meth:`rag.types.AskResult.public_json` for
``/v1/retrieve`` and ``/v1/ask``, ``ingest.pipeline.FileResult`` for uploads, ``rag.store.DocumentRecord``
for document lists. Unknown fields are ignored, so clients written for Cohere, Jina, TEI or OpenAI can
send the options of those APIs that have no meaning here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

MAX_DOCUMENTS = 1000  # per rerank request, as Cohere recommends


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


class RerankDocument(BaseModel):
    text: str


class RerankRequest(BaseModel):
    """Cohere v2 / Jina: rerank ``documents`` against ``query``."""

    model: str | None = Field(None, description="A reranker name from `rerank-rag rerankers`; default: the "
                              "server's configured reranker.")
    query: str = Field(max_length=20_000)
    documents: list[str | RerankDocument] = Field(max_length=MAX_DOCUMENTS,
                                                  description="Strings, or objects with a `text` field.")
    top_n: int | None = Field(None, ge=1, description="Return only the best N; default: all.")
    return_documents: bool = Field(False, description="Include each document's text in its result.")

    _query = field_validator("query")(_not_blank)

    def texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]


class TeiRerankRequest(BaseModel):
    """Hugging Face text-embeddings-inference's /rerank."""

    query: str = Field(max_length=20_000)
    texts: list[str] = Field(max_length=MAX_DOCUMENTS)
    raw_scores: bool = Field(False, description="Accepted for compatibility; scores are always the reranker's "
                             "own relevance scores (sigmoid of the logit for cross-encoders, as TEI's default).")
    return_text: bool = False

    _query = field_validator("query")(_not_blank)


class AskRequest(BaseModel):
    """One question over a collection, as `rerank-rag ask` takes it."""

    question: str = Field(description="At most RAG_MAX_QUESTION_CHARS (4,000) characters.")
    collection: str | None = Field(None, description="Default: the key's collection when it opens only one, "
                                   "else the server's configured collection.")
    top_k: int | None = Field(None, ge=1, le=200, description="Candidates from the first retrieval (default 20).")
    top_n: int | None = Field(None, ge=1, le=50, description="Chunks kept after rerank (default 5).")
    rerank: bool = Field(True, description="False keeps the first retrieval's order.")
    retrieval: Literal["hybrid", "dense", "bm25"] | None = Field(None, description="The first stage; default: "
                                                                 "the server's setting.")

    _question = field_validator("question")(_not_blank)


class ChatMessage(BaseModel):
    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: keep the text ones
            return "\n".join(str(part.get("text", "")) for part in self.content if part.get("type") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    """OpenAI's chat completions over a collection: ``model`` is ``rerank-rag/<collection>``; the last user
    message is the question. Sampling options (temperature, max_tokens, ...) are accepted and ignored: the
    server's LLM settings apply."""

    model: str = Field(description="`rerank-rag/<collection>` (see GET /v1/models), or `rerank-rag` for the "
                       "default collection.")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False

    def question(self) -> str:
        for message in reversed(self.messages):
            if message.role == "user" and message.text().strip():
                return message.text()
        raise ValueError("no user message with text: the last user message is the question")
