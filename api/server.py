"""The HTTP API: one FastAPI app over one knowledge base, its models loaded once per process.

    rerank-rag serve [--host 127.0.0.1] [--port 8000]      # OpenAPI docs at http://127.0.0.1:8000/docs

Endpoints (every one but ``/health`` and the docs needs a key once keys exist; see :mod:`api.keys`):

- ``POST /v1/rerank`` (Cohere v2 / Jina; also ``/v2/rerank``, where Cohere's SDK sends it) and
  ``POST /rerank`` (Hugging Face TEI): the reranker alone, on the caller's texts;
- ``POST /v1/retrieve`` and ``POST /v1/ask``: the result of ``rerank-rag ask --json``
  (:meth:`rag.types.AskResult.public_json`), without and with the answer;
- ``POST /v1/chat/completions`` and ``GET /v1/models``: OpenAI's API over a collection
  (``model`` = ``rerank-rag/<collection>``), plain or streamed as server-sent events;
- ``GET /v1/collections``, ``GET|POST /v1/collections/{c}/documents``,
  ``DELETE /v1/collections/{c}/documents/{source_or_doc_id}``; ``GET /health``.

Model calls run in a :class:`api.workers.WorkerPool` (reads) and ingests in another (writes, RAG_UPLOAD_WORKERS
at once), never on the event loop; a full pool answers 503 with ``Retry-After``. Every error is JSON,
``{"error": {"message", "type"}}``, in plain words, never a traceback.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any

from fastapi import Depends, FastAPI, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.chat import chat_completion, chat_events, sources_block  # noqa: F401 - sources_block: re-exported
from api.errors import ApiError, error_body, install_error_handlers, store_error_status  # noqa: F401
from api.feedback import asker, install as install_feedback_routes
from api.guards import RequestGuard, allowed_host_names
from api.keys import ApiKey
from api.schemas import AskRequest, ChatRequest, RerankRequest, TeiRerankRequest
from api.service import Api, _Upload, is_loopback, public_result  # noqa: F401 - is_loopback: api.cli, tests
from rag.catalog import model_label
from rag.limits import strip_controls
from rag.settings import Settings

MODEL_PREFIX = "rerank-rag"
MAX_UPLOAD_FILES = 100


def ranked(scores: list[float], top_n: int | None = None) -> list[int]:
    """Indexes by score, best first (a stable sort: ties keep the caller's order)."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    return order[:top_n] if top_n else order


def chat_question(api: Api, body: ChatRequest) -> str:
    """The last user message, cleaned; every message and the whole history bounded first (400)."""
    total = 0
    for n, message in enumerate(body.messages, 1):
        text = message.text()
        total += len(text)
        if len(text) > api.settings.max_question_chars:
            raise ApiError(400, f"message {n} is {len(text):,} characters; the limit is "
                           f"{api.settings.max_question_chars:,} (RAG_MAX_QUESTION_CHARS)", "invalid_request_error")
    if total > api.settings.max_chat_chars:
        raise ApiError(400, f"the messages are {total:,} characters together; the limit is "
                       f"{api.settings.max_chat_chars:,} (RAG_MAX_CHAT_CHARS)", "invalid_request_error")
    for message in reversed(body.messages):
        if message.role == "user" and strip_controls(message.text()).strip():
            return api.question(message.text())
    raise ApiError(400, "no user message with text: the last user message is the question", "invalid_request_error")


# ---- the app ---------------------------------------------------------------------------------------
bearer = HTTPBearer(auto_error=False, description="An API key from `rerank-rag keys create` (none needed on a "
                    "loopback server while no key exists).")


api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The same key, in the header "
                              "Cohere-, Jina- and TEI-style clients send.")


def needs(scope: str) -> Callable:
    """A dependency: the caller's key (``Authorization: Bearer`` or ``X-API-Key``), checked for ``scope``."""

    def dependency(request: Request, credentials: HTTPAuthorizationCredentials | None = Security(bearer),
                   header_key: str | None = Security(api_key_header)) -> ApiKey | None:
        token = credentials.credentials if credentials else (header_key or "").strip() or None
        return request.app.state.api.authorize(token, scope)

    return dependency


def create_app(settings: Settings, *, bind_host: str = "127.0.0.1", workers: int | None = None,
               queue: int | None = None, upload_limit_mb: float | None = None, keys_ttl_s: float = 2.0,
               warm: bool = True) -> FastAPI:
    """The API over ``settings``' knowledge base. ``bind_host``: where it will listen (without keys, only a
    loopback server answers); ``workers``/``queue``: the inference pool (default: one worker per core,
    2-8, and four waiting per worker); ``warm``: load the models before serving."""
    api = Api(settings, bind_host=bind_host, workers=workers, queue=queue, upload_limit_mb=upload_limit_mb,
              keys_ttl_s=keys_ttl_s)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if warm:
            await run_in_threadpool(api.warm)
        yield
        api.shutdown()

    app = FastAPI(title="rerank-rag", version="0.1.0", lifespan=lifespan,
                  description="Retrieval with a cross-encoder rerank over your documents: Cohere/Jina and TEI "
                  "rerank, retrieve and ask (the `rerank-rag ask --json` result), OpenAI-compatible chat.")
    app.state.api = api
    app.add_middleware(RequestGuard, hosts=allowed_host_names(settings.allowed_hosts, bind_host),
                       body_limit=int(settings.max_request_mb * 1_000_000), upload_limit=api.upload_limit)
    install_error_handlers(app)
    _routes(app, api)
    return app


def _routes(app: FastAPI, api: Api) -> None:  # noqa: C901 - one place that lists every route
    read, write = Depends(needs("read")), Depends(needs("write"))
    install_feedback_routes(app, api, read, write)  # /v1/feedback (api/feedback.py)

    @app.get("/health", tags=["server"])
    def health() -> dict:
        """Liveness and what the server runs; needs no key."""
        s = api.settings
        return {"status": "ok", "embedder": model_label(s.embed_model), "reranker": model_label(s.reranker),
                "retrieval": s.retrieval,  # a folder by its name: the server's paths are no caller's business
                "llm": s.llm_model if s.llm_configured else None,
                "pools": {"inference": api.reads.status(), "ingest": api.writes.status()},
                "uptime_s": round(time.time() - api.started, 1)}

    # ---- rerank ------------------------------------------------------------------------------------
    async def _rerank(body: RerankRequest, key: ApiKey | None) -> dict:
        texts = body.texts()
        query = api.question(body.query, "the query")
        reranker, scores, ms = await api.reads.run(api.rerank, body.model, query, texts, key)
        results = []
        for i in ranked(scores, body.top_n):
            item: dict[str, Any] = {"index": i, "relevance_score": scores[i]}
            if body.return_documents:
                item["document"] = {"text": texts[i]}
            results.append(item)
        return {"id": str(uuid.uuid4()), "results": results, "model": reranker.name,
                "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1},
                         "rerank_rag": {"reranker": reranker.name, "backend": reranker.backend, "rerank_ms": ms}}}

    @app.post("/v1/rerank", tags=["rerank"])
    async def rerank_v1(body: RerankRequest, key: ApiKey | None = read) -> dict:
        """Cohere v2 / Jina rerank: each document's relevance to the query, best first."""
        return await _rerank(body, key)

    @app.post("/v2/rerank", tags=["rerank"])
    async def rerank_v2(body: RerankRequest, key: ApiKey | None = read) -> dict:
        """The same as /v1/rerank, where Cohere's `ClientV2` sends it."""
        return await _rerank(body, key)

    @app.post("/rerank", tags=["rerank"])
    async def rerank_tei(body: TeiRerankRequest, key: ApiKey | None = read) -> list[dict]:
        """Hugging Face text-embeddings-inference's rerank, with the configured reranker."""
        query = api.question(body.query, "the query")
        _, scores, _ = await api.reads.run(api.rerank, None, query, body.texts)
        return [{"index": i, "score": scores[i], **({"text": body.texts[i]} if body.return_text else {})}
                for i in ranked(scores)]

    # ---- retrieve / ask ----------------------------------------------------------------------------
    async def _ask(body: AskRequest, key: ApiKey | None, generate: bool) -> dict:
        collection = body.collection or api.default_collection(key)
        api.check_opens(key, collection)
        api.require_collection_name(collection)
        question = api.question(body.question)

        def work() -> dict:
            api.require_collection(collection)
            result = api.pipeline.ask(question, collection=collection, top_k=body.top_k, top_n=body.top_n,
                                      rerank=body.rerank, retrieval=body.retrieval, generate=generate,
                                      asker=asker(key))
            return public_result(result, key)

        return await api.reads.run(work)

    @app.post("/v1/retrieve", tags=["knowledge base"])
    async def retrieve(body: AskRequest, key: ApiKey | None = read) -> dict:
        """First retrieval and rerank, no answer: the `rerank-rag ask --json` result with an empty answer."""
        return await _ask(body, key, generate=False)

    @app.post("/v1/ask", tags=["knowledge base"])
    async def ask(body: AskRequest, key: ApiKey | None = read) -> dict:
        """A question answered from a collection: exactly what `rerank-rag ask --json` prints."""
        return await _ask(body, key, generate=True)

    # ---- OpenAI-compatible -------------------------------------------------------------------------
    def chat_collection(model: str, key: ApiKey | None) -> str:
        model = model.strip()
        if model == MODEL_PREFIX:
            return api.default_collection(key)
        if model.startswith(MODEL_PREFIX + "/") and model[len(MODEL_PREFIX) + 1:]:
            return model[len(MODEL_PREFIX) + 1:]
        raise ApiError(404, f"unknown model '{model}': use 'rerank-rag/<collection>' (GET /v1/models lists them)",
                       "model_not_found")

    @app.get("/v1/models", tags=["openai"])
    def models(key: ApiKey | None = read) -> dict:
        """The collections this key opens, as OpenAI models named `rerank-rag/<collection>`."""
        names = [name for name in api.collections() if key is None or key.opens(name)]
        return {"object": "list", "data": [{"id": f"{MODEL_PREFIX}/{name}", "object": "model", "created": 0,
                                            "owned_by": "rerank-rag"} for name in names]}

    @app.post("/v1/chat/completions", tags=["openai"])
    async def chat(body: ChatRequest, key: ApiKey | None = read):
        """OpenAI chat completions over a collection: the last user message is the question; the answer cites
        [n] the chunks listed under it. The extra field `rerank_rag` holds the whole result (OpenAI clients
        ignore it). `stream: true` streams server-sent events: the LLM's tokens as they come, or the
        extractive answer in one piece."""
        collection = chat_collection(body.model, key)
        api.check_opens(key, collection)
        api.require_collection_name(collection)
        question = chat_question(api, body)
        await run_in_threadpool(api.require_collection, collection)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        if not body.stream:
            result = await api.reads.run(api.pipeline.ask, question, collection=collection, asker=asker(key))
            return chat_completion(completion_id, body.model, result, key)
        events = chat_events(api, completion_id, body.model, question, collection, asker(key), key=key)
        return StreamingResponse(events, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # ---- collections and documents -----------------------------------------------------------------
    @app.get("/v1/collections", tags=["knowledge base"])
    def collections(key: ApiKey | None = read) -> dict:
        """The collections this key opens, with their document and chunk counts."""
        data = []
        for name in api.collections():
            if key is not None and not key.opens(name):
                continue
            try:
                records = api.knowledge_base(name).documents()
                data.append({"name": name, "documents": len(records), "chunks": sum(r.chunks for r in records)})
            except StoreError as error:  # e.g. built with another embedder: listed, with why it cannot be read
                data.append({"name": name, "error": str(error)})
        return {"object": "list", "data": data}

    @app.get("/v1/collections/{collection}/documents", tags=["knowledge base"])
    def documents(collection: str, key: ApiKey | None = read) -> dict:
        """The documents of a collection, as `rerank-rag docs --json` prints them."""
        api.check_opens(key, collection)
        api.require_collection_name(collection)
        api.require_collection(collection)
        return {"collection": collection, "data": [r.__dict__ for r in api.knowledge_base(collection).documents()]}

    @app.post("/v1/collections/{collection}/documents", tags=["knowledge base"], openapi_extra={
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["files"],
            "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}}})
    async def upload(collection: str, request: Request, key: ApiKey | None = write) -> dict:
        """Ingest the uploaded files (multipart, field `files`, several allowed): one result per file, ok /
        skipped (unchanged) / failed with its reason; a failing file never stops the others. A file over
        RAG_MAX_FILE_MB fails alone. A full upload queue answers 503 with Retry-After (RAG_UPLOAD_WORKERS,
        RAG_UPLOAD_QUEUE)."""
        api.check_opens(key, collection)
        api.require_collection_name(collection)
        api.writes.check()  # a full upload queue answers 503 before the body costs anything
        bounded = request  # RequestGuard bounds the body as it is read
        try:
            form = await bounded.form(max_files=MAX_UPLOAD_FILES, max_fields=MAX_UPLOAD_FILES)
        except (ApiError, StarletteHTTPException):
            raise
        except Exception as error:  # noqa: BLE001 - malformed multipart: starlette's error says what
            raise ApiError(400, f"cannot read the upload: {getattr(error, 'detail', None) or error}; send "
                           "multipart/form-data with one or more 'files' parts", "invalid_request_error") from error
        try:
            uploads = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
            if not uploads:
                raise ApiError(400, "no files: send multipart/form-data with one or more 'files' parts",
                               "invalid_request_error")
            files = [_Upload(name=(u.filename or "").strip() or f"upload-{n}", upload=u)
                     for n, u in enumerate(uploads, 1)]
            # a client that hangs up cancels its ingest: it stops at the file's next page, nothing more committed
            results = await api.writes.run_cancellable(request.is_disconnected, api.ingest, collection, files)
        finally:
            await form.close()
        return {"collection": collection, "results": [asdict(result) for result in results]}

    @app.delete("/v1/collections/{collection}/documents/{source_or_doc_id:path}", tags=["knowledge base"])
    async def delete(collection: str, source_or_doc_id: str, key: ApiKey | None = write) -> dict:
        """Remove a document (by its source name or doc id) and all its chunks."""
        api.check_opens(key, collection)
        api.require_collection_name(collection)
        return await api.writes.run(api.delete, collection, source_or_doc_id)
