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

Model calls run in a :class:`api.workers.WorkerPool` (reads) and ingests in another (writes, one at a
time), never on the event loop; a full pool answers 503 with ``Retry-After``. Every error is JSON,
``{"error": {"message", "type"}}``, in plain words, never a traceback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any

from fastapi import Depends, FastAPI, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.keys import KEYS_COLLECTION, ApiKey, KeyStore
from api.schemas import AskRequest, ChatRequest, RerankRequest, TeiRerankRequest
from api.workers import Busy, WorkerPool, default_workers
from ingest.pipeline import FileResult, Ingestor, SourceFile
from rag import catalog
from rag.models import ModelUnavailableError
from rag.pipeline import RagPipeline
from rag.rerank import Reranker, load_reranker
from rag.settings import Settings, reranker_off
from rag.store import KnowledgeBase, StoreError, collection_names
from rag.types import AskResult

log = logging.getLogger("rerank_rag.api")
MODEL_PREFIX = "rerank-rag"
MAX_UPLOAD_FILES = 100


class ApiError(Exception):
    """An error the client should read: an HTTP status, an error type and a message in plain words."""

    def __init__(self, status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.headers = status, message, kind, headers


def error_body(message: str, kind: str) -> dict:
    return {"error": {"message": message, "type": kind}}


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def store_error_status(error: StoreError) -> tuple[int, str]:
    """StoreError says everything in its message; map the ones the client caused to 4xx."""
    text = str(error)
    if text.startswith("invalid collection name"):
        return 400, "invalid_request_error"
    if "was built with the embedder" in text:
        return 409, "conflict"
    return 503, "store_unavailable"


@dataclass(frozen=True)
class _Upload(SourceFile):
    """An uploaded file as ingest reads it: its size known up front, its bytes read only when ingested.

    Starlette spools each upload to a temporary file (in memory up to 1 MB, then on disk), so an upload
    over ``max_file_mb`` is never held in memory: ingest fails it on its size, without reading it.
    """

    upload: Any = None

    def size(self) -> int:
        return int(self.upload.size or 0)

    def read(self) -> bytes:
        self.upload.file.seek(0)
        return self.upload.file.read()


class Api:
    """What the routes share: settings, the pipeline (models loaded once), keys, the worker pools."""

    def __init__(self, settings: Settings, *, bind_host: str = "127.0.0.1", workers: int | None = None,
                 queue: int | None = None, upload_limit_mb: float | None = None, keys_ttl_s: float = 2.0) -> None:
        self.settings = settings
        self.pipeline = RagPipeline(settings)
        self.keys = KeyStore(settings, ttl_s=keys_ttl_s)
        # Without any key, only a loopback server is open; one on another interface refuses everything.
        self.open_without_keys = is_loopback(bind_host)
        workers = workers or default_workers()
        self.reads = WorkerPool("inference", workers, 4 * workers if queue is None else queue)
        self.writes = WorkerPool("ingest", 1, 4 if queue is None else max(1, queue))
        self.upload_limit = int((upload_limit_mb or 10 * settings.max_file_mb) * 1_000_000)
        self.started = time.time()

    def warm(self) -> None:
        """Load the embedder and the configured reranker now, not on the first request."""
        _ = self.pipeline.embedder
        _ = self.pipeline.reranker

    def shutdown(self) -> None:
        self.reads.shutdown()
        self.writes.shutdown()

    # ---- keys ------------------------------------------------------------------------------------
    def authorize(self, token: str | None, scope: str) -> ApiKey | None:
        """The caller's key (None on an open loopback server without keys); raises 401/403."""
        if not self.keys.any():
            if self.open_without_keys:
                return None
            raise ApiError(401, "this server has no API keys yet: create one with `rerank-rag keys create`",
                           "authentication_error", {"WWW-Authenticate": "Bearer"})
        if not token:
            raise ApiError(401, "an API key is needed: send the header 'Authorization: Bearer <key>'",
                           "authentication_error", {"WWW-Authenticate": "Bearer"})
        key = self.keys.lookup(token)
        if key is None:
            raise ApiError(401, "the API key is not valid (unknown or revoked)", "authentication_error",
                           {"WWW-Authenticate": "Bearer"})
        if not key.allows(scope):
            raise ApiError(403, f"the key '{key.name}' has the scope '{key.scope}'; this needs '{scope}'",
                           "permission_error")
        return key

    @staticmethod
    def check_opens(key: ApiKey | None, collection: str) -> None:
        if key is not None and not key.opens(collection):
            raise ApiError(403, f"the key '{key.name}' opens the collection '{key.collection}' only",
                           "permission_error")

    def default_collection(self, key: ApiKey | None) -> str:
        """The key's collection when it opens only one, else the server's configured collection."""
        return key.collection if key is not None and key.collection != "*" else self.settings.collection

    # ---- the store -------------------------------------------------------------------------------
    def collections(self) -> list[str]:
        return [name for name in collection_names(self.settings) if name != KEYS_COLLECTION]

    def require_collection(self, collection: str) -> None:
        if collection not in self.collections():
            raise ApiError(404, f"no collection '{collection}': GET /v1/collections lists them, and uploading "
                           "documents creates one", "not_found")

    def knowledge_base(self, collection: str) -> KnowledgeBase:
        return KnowledgeBase(self.settings, collection)

    # ---- rerankers -------------------------------------------------------------------------------
    def reranker(self, model: str | None) -> Reranker:
        """The reranker a request names (a catalog name), or the configured one; raises 400/404."""
        configured = self.settings.reranker
        wanted = (model or "").strip()
        named = catalog.lookup(wanted) if wanted else None
        if not wanted or wanted == configured or (named is not None and named is catalog.lookup(configured)):
            reranker = self.pipeline.reranker
            if reranker is None:
                raise ApiError(400, "this server runs without a reranker (RAG_RERANKER=none): name one in 'model' "
                               "(`rerank-rag rerankers` lists them)", "invalid_request_error")
            return reranker
        if named is None or reranker_off(wanted):
            known = ", ".join(info.name for info in catalog.CATALOG)
            raise ApiError(404, f"unknown reranker '{wanted}': use one of {known}", "model_not_found")
        available, where = catalog.availability(named)
        if not available:
            raise ApiError(400, f"the reranker '{named.name}' is not available on this server: {where}",
                           "model_unavailable")
        try:
            reranker = load_reranker(named.name, self.settings.device)
        except ModelUnavailableError as error:
            raise ApiError(400, str(error), "model_unavailable") from error
        assert reranker is not None
        return reranker

    def rerank(self, model: str | None, query: str, texts: list[str]) -> tuple[Reranker, list[float], float]:
        reranker = self.reranker(model)
        started = time.perf_counter()
        scores = reranker.score(query, texts)
        return reranker, scores, round((time.perf_counter() - started) * 1000, 2)

    # ---- writes ----------------------------------------------------------------------------------
    def ingest(self, collection: str, files: list[SourceFile]) -> list[FileResult]:
        return Ingestor(self.settings, collection).ingest(files)

    def delete(self, collection: str, source_or_doc_id: str) -> dict:
        self.require_collection(collection)
        kb = self.knowledge_base(collection)
        record = kb.find(source_or_doc_id)
        if record is None:
            raise ApiError(404, f"no document '{source_or_doc_id}' in the collection '{collection}'", "not_found")
        removed = kb.delete_document(record.doc_id)
        return {"deleted": {"source": record.source, "doc_id": record.doc_id}, "chunks": removed,
                "collection": collection}


# ---- responses -------------------------------------------------------------------------------------
def ranked(scores: list[float], top_n: int | None = None) -> list[int]:
    """Indexes by score, best first (a stable sort: ties keep the caller's order)."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    return order[:top_n] if top_n else order


def sources_block(result: AskResult) -> str:
    """What the [n] of an answer refer to, for chat clients that show only the message."""
    if not result.chunks:
        return ""
    return "\n\nSources:\n" + "\n".join(f"[{n}] {chunk.citation}" for n, chunk in enumerate(result.chunks, 1))


def chat_completion(completion_id: str, model: str, result: AskResult) -> dict:
    return {
        "id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                     "message": {"role": "assistant", "content": result.answer + sources_block(result)}}],
        "rerank_rag": result.public_json(),
    }


def chat_chunk(completion_id: str, model: str, delta: dict, finish_reason: str | None = None, **extra: Any) -> str:
    event = {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}], **extra}
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n"


def _describe_invalid(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        if item.get("type") == "json_invalid":
            return "invalid request: the body is not valid JSON"
        where = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
        parts.append(f"{where or 'body'}: {item.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def _limited_receive(receive: Callable, limit: int) -> Callable:
    """The request's body, refused with 413 once it passes ``limit`` bytes (a lying Content-Length too)."""
    seen = 0

    async def inner() -> dict:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise ApiError(413, f"the upload is over {limit / 1e6:g} MB in all; send fewer files per request",
                               "request_too_large")
        return message

    return inner


# ---- the app ---------------------------------------------------------------------------------------
bearer = HTTPBearer(auto_error=False, description="An API key from `rerank-rag keys create` (none needed on a "
                    "loopback server while no key exists).")


def needs(scope: str) -> Callable:
    """A dependency: the caller's key, checked for ``scope`` (read ⊂ write ⊂ admin)."""

    def dependency(request: Request,
                   credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> ApiKey | None:
        return request.app.state.api.authorize(credentials.credentials if credentials else None, scope)

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
    _errors(app)
    _routes(app, api)
    return app


def _errors(app: FastAPI) -> None:
    def reply(status: int, message: str, kind: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse(error_body(message, kind), status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, error: ApiError) -> JSONResponse:
        return reply(error.status, error.message, error.kind, error.headers)

    @app.exception_handler(Busy)
    async def _busy(_: Request, error: Busy) -> JSONResponse:
        return reply(503, str(error), "overloaded", {"Retry-After": str(error.retry_after)})

    @app.exception_handler(StoreError)
    async def _store(_: Request, error: StoreError) -> JSONResponse:
        status, kind = store_error_status(error)
        return reply(status, str(error), kind)

    @app.exception_handler(ModelUnavailableError)
    async def _model(_: Request, error: ModelUnavailableError) -> JSONResponse:
        return reply(503, f"a model this server is configured with cannot be loaded: {error}", "model_unavailable")

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        return reply(400, _describe_invalid(error), "invalid_request_error")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "invalid_request_error")
        message = str(error.detail)
        if error.status_code in (404, 405) and message in ("Not Found", "Method Not Allowed"):
            message = (f"no endpoint {request.method} {request.url.path}: the API is described at /docs"
                       if error.status_code == 404 else f"{request.url.path} does not take {request.method}")
        return reply(error.status_code, message, kind, getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(_: Request, error: Exception) -> JSONResponse:
        # Starlette re-raises it after this reply, and uvicorn logs the traceback: the log has it, the client not.
        return reply(500, f"internal error ({type(error).__name__}); the server's log has the details",
                     "internal_error")


def _routes(app: FastAPI, api: Api) -> None:  # noqa: C901 - one place that lists every route
    read, write = Depends(needs("read")), Depends(needs("write"))

    @app.get("/health", tags=["server"])
    def health() -> dict:
        """Liveness and what the server runs; needs no key."""
        s = api.settings
        return {"status": "ok", "embedder": s.embed_model, "reranker": s.reranker, "retrieval": s.retrieval,
                "llm": s.llm_model if s.llm_configured else None,
                "pools": {"inference": api.reads.status(), "ingest": api.writes.status()},
                "uptime_s": round(time.time() - api.started, 1)}

    # ---- rerank ------------------------------------------------------------------------------------
    async def _rerank(body: RerankRequest) -> dict:
        texts = body.texts()
        reranker, scores, ms = await api.reads.run(api.rerank, body.model, body.query, texts)
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
        return await _rerank(body)

    @app.post("/v2/rerank", tags=["rerank"])
    async def rerank_v2(body: RerankRequest, key: ApiKey | None = read) -> dict:
        """The same as /v1/rerank, where Cohere's `ClientV2` sends it."""
        return await _rerank(body)

    @app.post("/rerank", tags=["rerank"])
    async def rerank_tei(body: TeiRerankRequest, key: ApiKey | None = read) -> list[dict]:
        """Hugging Face text-embeddings-inference's rerank, with the configured reranker."""
        _, scores, _ = await api.reads.run(api.rerank, None, body.query, body.texts)
        return [{"index": i, "score": scores[i], **({"text": body.texts[i]} if body.return_text else {})}
                for i in ranked(scores)]

    # ---- retrieve / ask ----------------------------------------------------------------------------
    async def _ask(body: AskRequest, key: ApiKey | None, generate: bool) -> dict:
        collection = body.collection or api.default_collection(key)
        api.check_opens(key, collection)

        def work() -> dict:
            api.require_collection(collection)
            return api.pipeline.ask(body.question, collection=collection, top_k=body.top_k, top_n=body.top_n,
                                    rerank=body.rerank, retrieval=body.retrieval, generate=generate).public_json()

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
        try:
            question = body.question()
        except ValueError as error:
            raise ApiError(400, str(error), "invalid_request_error") from error
        await run_in_threadpool(api.require_collection, collection)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        if not body.stream:
            result = await api.reads.run(api.pipeline.ask, question, collection=collection)
            return chat_completion(completion_id, body.model, result)
        return StreamingResponse(_chat_events(completion_id, body.model, question, collection),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    def _chat_events(completion_id: str, model: str, question: str, collection: str) -> AsyncIterator[str]:
        """Starts the answer now (so a full pool is a 503, not a broken stream), then relays its tokens."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue = asyncio.Queue()

        def post(item: tuple) -> None:
            try:
                loop.call_soon_threadsafe(pieces.put_nowait, item)
            except RuntimeError:  # the loop is gone: the server is stopping
                pass

        future = api.reads.submit(api.pipeline.ask, question, collection=collection,
                                  on_token=lambda piece: post(("token", piece)))
        future.add_done_callback(lambda done: post(("done", done)))

        async def events() -> AsyncIterator[str]:
            yield chat_chunk(completion_id, model, {"role": "assistant", "content": ""})
            streamed = False
            while True:
                kind, value = await pieces.get()
                if kind == "done":
                    break
                streamed = True
                yield chat_chunk(completion_id, model, {"content": value})
            try:
                result: AskResult = value.result()
            except Exception as error:  # noqa: BLE001 - told to the client as an OpenAI error event
                if isinstance(error, StoreError):
                    message, kind = str(error), store_error_status(error)[1]
                elif isinstance(error, ApiError):
                    message, kind = error.message, error.kind
                else:
                    log.error("internal error while streaming: %s", type(error).__name__, exc_info=error)
                    message, kind = f"internal error ({type(error).__name__})", "internal_error"
                yield f"data: {json.dumps(error_body(message, kind))}\n\n"
                yield "data: [DONE]\n\n"
                return
            if result.answer_mode != "llm":
                text = result.answer
                if streamed:  # the LLM broke off mid-answer: say so, then give the extractive answer
                    text = f"\n\n(The LLM's answer broke off: {result.error}. An extractive answer follows.)\n\n{text}"
                yield chat_chunk(completion_id, model, {"content": text})
            if sources_block(result):
                yield chat_chunk(completion_id, model, {"content": sources_block(result)})
            yield chat_chunk(completion_id, model, {}, "stop", rerank_rag=result.public_json())
            yield "data: [DONE]\n\n"

        return events()

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
        api.require_collection(collection)
        return {"collection": collection, "data": [r.__dict__ for r in api.knowledge_base(collection).documents()]}

    @app.post("/v1/collections/{collection}/documents", tags=["knowledge base"], openapi_extra={
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["files"],
            "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}}})
    async def upload(collection: str, request: Request, key: ApiKey | None = write) -> dict:
        """Ingest the uploaded files (multipart, field `files`, several allowed): one result per file, ok /
        skipped (unchanged) / failed with its reason; a failing file never stops the others. A file over
        RAG_MAX_FILE_MB fails alone."""
        api.check_opens(key, collection)
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > api.upload_limit:
            raise ApiError(413, f"the upload is over {api.upload_limit / 1e6:g} MB in all; send fewer files per "
                           "request", "request_too_large")
        bounded = Request(request.scope, receive=_limited_receive(request.receive, api.upload_limit))
        try:
            form = await bounded.form(max_files=MAX_UPLOAD_FILES, max_fields=MAX_UPLOAD_FILES)
        except ApiError:
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
            results = await api.writes.run(api.ingest, collection, files)
        finally:
            await form.close()
        return {"collection": collection, "results": [asdict(result) for result in results]}

    @app.delete("/v1/collections/{collection}/documents/{source_or_doc_id:path}", tags=["knowledge base"])
    async def delete(collection: str, source_or_doc_id: str, key: ApiKey | None = write) -> dict:
        """Remove a document (by its source name or doc id) and all its chunks."""
        api.check_opens(key, collection)
        return await api.writes.run(api.delete, collection, source_or_doc_id)
