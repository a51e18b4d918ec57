"""What the routes share: settings, the pipeline (models loaded once), keys, the worker pools, and the
checks every route makes (key and scope, the collection it opens, the question's bounds)."""

from __future__ import annotations

import ipaddress
import threading
import time
from dataclasses import dataclass
from typing import Any

from api.errors import ApiError
from api.keys import ApiKey, KeyStore
from api.workers import WorkerPool, default_workers
from ingest.pipeline import FileResult, Ingestor, SourceFile
from rag import catalog
from rag.catalog import model_label
from rag.limits import check_text, clean_question
from rag.embedders.models import ModelUnavailableError
from rag.pipeline import RagPipeline
from rag.rerank import Reranker, load_reranker
from rag.settings import Settings, reranker_off
from rag.store import KnowledgeBase, check_user_collection, collection_names, reserved_reason
from rag.types import AskResult


CHARS_PER_TOKEN = 16  # the most characters a reranker's token is taken to cover, when cutting a text to its window


def window_chars(reranker: Reranker) -> int:
    """The characters a reranker's token window can hold at most (its max_length in tokens, 512 when unknown)."""
    tokens = getattr(reranker, "max_length", None) or getattr(getattr(reranker, "model", None), "max_length", None)
    return int(tokens or 512) * CHARS_PER_TOKEN


def shown_model(name: str | None, key: ApiKey | None) -> str | None:
    """A model's name as a caller may read it: a folder's whole path for an admin key or an open server, else its
    last part (a fine-tune lives in the server's data dir, which is none of a read key's business)."""
    return name if not name or key is None or key.allows("admin") else model_label(name)


def public_result(result: AskResult, key: ApiKey | None) -> dict:
    """The ask result as ``key``'s caller reads it (/v1/ask, /v1/retrieve, chat): its reranker by shown_model."""
    return {**result.public_json(), "reranker": shown_model(result.reranker, key)}


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


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
        # Uploads have workers of their own: a long OCR job of one client leaves another's upload a worker.
        # Retry-After 10 s: an ingest takes seconds to minutes, not a question's fraction of one.
        self.writes = WorkerPool("ingest", settings.upload_workers, settings.upload_queue, retry_after_s=10)
        self.upload_limit = int((upload_limit_mb or 10 * settings.max_file_mb) * 1_000_000)
        self.started = time.time()
        self.loaded_rerankers: set[str] = set()  # catalog rerankers loaded on a request's word, besides the configured

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
        return collection_names(self.settings)  # the user's: the store's own collections are never listed

    @staticmethod
    def require_collection_name(collection: str) -> None:
        """404 for the store's own collections, before anything else is looked at."""
        if reserved_reason(collection) is not None:
            raise ApiError(404, f"no collection '{collection}': the name is reserved for the store's own records, "
                           "never a target of requests", "not_found")

    def require_collection(self, collection: str) -> None:
        if reserved_reason(collection) is not None:
            raise ApiError(404, f"no collection '{collection}': the name is reserved for the store's own records",
                           "not_found")
        if collection not in self.collections():
            raise ApiError(404, f"no collection '{collection}': GET /v1/collections lists them, and uploading "
                           "documents creates one", "not_found")

    def knowledge_base(self, collection: str) -> KnowledgeBase:
        return KnowledgeBase(self.settings, collection)

    # ---- rerankers -------------------------------------------------------------------------------
    def reranker(self, model: str | None, key: ApiKey | None = None) -> Reranker:
        """The reranker a request names (a catalog name), or the configured one; raises 400/403/404. Loading one
        this process has not loaded yet takes an admin key (or an open server): it reads the server's files and
        holds their memory for every caller."""
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
        if named.name not in self.loaded_rerankers and key is not None and not key.allows("admin"):
            raise ApiError(403, f"the reranker '{named.name}' is not loaded on this server, and loading one takes an "
                           f"admin key (this key '{key.name}' has {key.scope} scope): leave 'model' out for the "
                           f"configured reranker ({model_label(configured)})", "permission_error")
        try:
            reranker = load_reranker(named.name, self.settings.device)
        except ModelUnavailableError as error:
            raise ApiError(400, str(error), "model_unavailable") from error
        assert reranker is not None
        self.loaded_rerankers.add(named.name)
        return reranker

    def rerank(self, model: str | None, query: str, texts: list[str],
               key: ApiKey | None = None) -> tuple[Reranker, list[float], float]:
        """Scores of ``texts`` against ``query``; the whole request bounded (RAG_MAX_RERANK_CHARS) before any text
        is tokenized, each text cut to what the model's window can hold."""
        reranker = self.reranker(model, key)
        texts = self.bounded_rerank_texts(reranker, query, texts)
        started = time.perf_counter()
        scores = reranker.score(query, texts)
        return reranker, scores, round((time.perf_counter() - started) * 1000, 2)

    def bounded_rerank_texts(self, reranker: Reranker, query: str, texts: list[str]) -> list[str]:
        """``texts``, each cut to the characters the reranker's token window can hold; 413 when the pairs would
        send more than RAG_MAX_RERANK_CHARS through it, 400 for a text that is not text.

        Hand-written because tokenizers truncate only after tokenizing the whole text: one 9 MB document costs its
        full tokenization (hundreds of MB) to keep 256 tokens. A window of real passages covers far fewer than
        CHARS_PER_TOKEN characters per token (scripts/rerank_window_chars.py), so the cut keeps every character the
        model would have read."""
        window = window_chars(reranker)
        for n, text in enumerate(texts, 1):
            try:
                check_text(text, f"document {n}")
            except ValueError as error:
                raise ApiError(400, str(error), "invalid_request_error") from error
        total = sum(min(len(query) + len(text), window) for text in texts)
        limit = self.settings.max_rerank_chars
        if total > limit:
            raise ApiError(413, f"these {len(texts):,} documents would send {total:,} characters through the reranker "
                           f"(each with the query, cut to the {window:,} its window can hold); the limit is {limit:,} "
                           "(RAG_MAX_RERANK_CHARS): send fewer or shorter documents", "request_too_large")
        return [text[:window] for text in texts]

    # ---- writes ----------------------------------------------------------------------------------
    def question(self, text: str, what: str = "the question") -> str:
        """``text`` cleaned (control characters out) and bounded by RAG_MAX_QUESTION_CHARS; raises 400."""
        try:
            return clean_question(text, self.settings.max_question_chars, what)
        except ValueError as error:
            raise ApiError(400, str(error), "invalid_request_error") from error

    def ingest(self, collection: str, files: list[SourceFile], cancel: threading.Event | None = None
               ) -> list[FileResult]:
        """Ingest ``files``; ``cancel`` set (the client hung up) stops at the file's next page, nothing committed
        of the files left."""
        check_user_collection(collection)  # an upload never creates or sweeps one of the store's own
        return Ingestor(self.settings, collection).ingest(files, cancel=cancel)

    def delete(self, collection: str, source_or_doc_id: str) -> dict:
        self.require_collection(collection)
        kb = self.knowledge_base(collection)
        record = kb.find(source_or_doc_id)
        if record is None:
            raise ApiError(404, f"no document '{source_or_doc_id}' in the collection '{collection}'", "not_found")
        removed = kb.delete_document(record.doc_id)
        return {"deleted": {"source": record.source, "doc_id": record.doc_id}, "chunks": removed,
                "collection": collection}


