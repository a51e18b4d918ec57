"""Which collections of a store are the user's, and which are the store's own.

The project keeps its own records beside the user's documents (the document registry, the API's keys,
a reindex's staging copy, the cached indexes of evaluation and benchmarks). Those names are reserved:
no ingest, upload, delete, question or listing from the CLI, the API or the app ever targets one, and
no user collection can be created with one. Internal code (evaluation, benchmarks) opens its own
collections directly; only the entry points that take a name from a person call
:func:`check_user_collection`.
"""

from __future__ import annotations

from rag.chroma_client import StoreError, open_client
from rag.settings import Settings

REGISTRY = "rerank-rag-registry"
KEYS_COLLECTION = "rerank-rag-keys"
FEEDBACK_COLLECTION = "rerank-rag-feedback"  # marks (rag.feedback); their question vectors: rerank-rag-memory-*
# The store's bookkeeping: never opened as a collection of chunks, not even by internal code.
INTERNAL_COLLECTIONS = frozenset({REGISTRY, KEYS_COLLECTION})
STAGING_SUFFIX = ".reindex"
# What the project creates for itself: rerank-rag-* (bookkeeping, present and future), eval-* (evaluation's
# cached corpus indexes), bench-* (the ingest benchmark's scratch collection).
RESERVED_PREFIXES = ("rerank-rag-", "eval-", "bench-")


class ReservedCollectionError(StoreError):
    """A person named one of the store's own collections; the message says which and why."""


def reserved_reason(name: str) -> str | None:
    """Why ``name`` is not a user collection, or None when it may be one."""
    lowered = name.strip().lower()
    if lowered in INTERNAL_COLLECTIONS or lowered.startswith("rerank-rag-"):
        return "it holds the store's own records (documents registry, API keys)"
    if lowered.endswith(STAGING_SUFFIX):
        return "it is a reindex's staging copy"
    if lowered.startswith("eval-"):
        return "evaluation keeps its cached dataset indexes under eval-*"
    if lowered.startswith("bench-"):
        return "benchmarks keep their scratch collections under bench-*"
    return None


def is_store_internal(name: str) -> bool:
    """The bookkeeping collections and staging copies: not chunks of documents at all."""
    return name in INTERNAL_COLLECTIONS or name.startswith("rerank-rag-") or name.endswith(STAGING_SUFFIX)


def check_user_collection(name: str) -> str:
    """``name`` when a person may read or write it; raises :class:`ReservedCollectionError` otherwise."""
    reason = reserved_reason(name)
    if reason is not None:
        raise ReservedCollectionError(f"the collection name '{name}' is reserved: {reason}; use another name")
    return name


def all_collection_names(settings: Settings) -> list[str]:
    """Every collection of the store, the reserved ones included (for internal code and tests)."""
    return sorted(c.name for c in open_client(settings).list_collections())


def collection_names(settings: Settings) -> list[str]:
    """The user's collections: what the CLI, the API and the app list."""
    return [name for name in all_collection_names(settings) if reserved_reason(name) is None]


def collection_embedder(settings: Settings, name: str | None = None) -> str | None:
    """The embedder a collection was built with; None when it does not exist yet (or never recorded one)."""
    try:
        collection = open_client(settings).get_collection(name or settings.collection)
    except Exception:  # noqa: BLE001 - chromadb raises NotFoundError or ValueError by version
        return None
    return (collection.metadata or {}).get("embed_model")
