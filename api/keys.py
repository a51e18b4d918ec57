"""API keys, kept hashed in the store itself so that they follow a Chroma server.

A key is a random token (``rr_`` + 43 URL-safe characters) printed once, when it is created; it is never
stored, logged or shown again. The store keeps its sha256 as the record id, with the key's name, its
own short id, the collection it opens (a name, or ``*`` for all) and its scope. Scopes are ordered,
each including the ones before it: ``read`` (retrieve, ask, chat, rerank, list) ⊂ ``write`` (upload,
delete) ⊂ ``admin``.

The records live in the Chroma collection ``rerank-rag-keys`` (created with the first key), beside the
chunks and the document registry, so every server of a shared Chroma sees the same keys. A running
server re-reads them at most every ``ttl_s`` seconds (2 by default): a key created or revoked from
the command line works, or stops working, within a few seconds.

>>> store = KeyStore(Settings())
>>> key, token = store.create("search-ui", collection="default", scope="read")
>>> store.lookup(token).name
'search-ui'
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from rag.settings import Settings
from rag.store import StoreError, open_client

from rag.store_names import KEYS_COLLECTION  # noqa: E402,F401 - one list of reserved names
SCOPES: tuple[str, ...] = ("read", "write", "admin")
ALL_COLLECTIONS = "*"
TOKEN_PREFIX = "rr_"
_NAME = re.compile(r"^[\w.@:+-]{1,64}$")


def hash_token(token: str) -> str:
    """The stored form of a token: its sha256, hex (a token carries 256 random bits, so no salt is needed)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def scope_includes(have: str, need: str) -> bool:
    """``admin`` ⊇ ``write`` ⊇ ``read``."""
    return SCOPES.index(have) >= SCOPES.index(need)


@dataclass(frozen=True)
class ApiKey:
    """What the store knows of a key: never the token itself."""

    key_id: str
    name: str
    collection: str  # a collection name, or "*" for all of them
    scope: str
    created_at: str

    def allows(self, scope: str) -> bool:
        return scope_includes(self.scope, scope)

    def opens(self, collection: str) -> bool:
        return self.collection in (ALL_COLLECTIONS, collection)

    def public(self) -> dict:
        return asdict(self)


class KeyStore:
    """Create, list, revoke and check API keys of one store (embedded or a Chroma server)."""

    def __init__(self, settings: Settings, ttl_s: float = 2.0) -> None:
        self.settings = settings
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._table: dict[str, ApiKey] = {}
        self._loaded_at: float | None = None

    # ---- the records -------------------------------------------------------------------------
    def _collection(self, create: bool):
        client = open_client(self.settings)
        try:
            if create:
                return client.get_or_create_collection(
                    KEYS_COLLECTION, embedding_function=None, metadata={"purpose": "rerank-rag API keys (hashed)"})
            return client.get_collection(KEYS_COLLECTION, embedding_function=None)
        except StoreError:
            raise  # already in plain words (e.g. the server is unreachable)
        except Exception as error:  # noqa: BLE001 - chromadb's "not found" and connection errors vary by version
            if not create and ("does not exist" in str(error) or type(error).__name__ == "NotFoundError"):
                return None
            raise StoreError(f"cannot read the API keys from the store ({type(error).__name__})") from error

    def _read(self) -> dict[str, ApiKey]:
        """sha256 of the token → key, read from the store now."""
        collection = self._collection(create=False)
        if collection is None:
            return {}
        try:
            rows = collection.get(include=["metadatas"])
        except StoreError:
            raise
        except Exception as error:  # noqa: BLE001 - a Chroma server gone away, in whatever type its client raises
            raise StoreError(f"cannot read the API keys from the store ({type(error).__name__})") from error
        fields = ApiKey.__dataclass_fields__
        return {
            token_hash: ApiKey(**{name: str(meta.get(name, "")) for name in fields})
            for token_hash, meta in zip(rows["ids"], rows["metadatas"], strict=True)
        }

    def keys(self) -> list[ApiKey]:
        """Every key, oldest first (read from the store now, not from the cache)."""
        return sorted(self._read().values(), key=lambda key: (key.created_at, key.name))

    def create(self, name: str, *, collection: str, scope: str) -> tuple[ApiKey, str]:
        """A new key and its token; the token exists only in the return value."""
        name = name.strip()
        if not _NAME.match(name):
            raise ValueError("a key name is 1-64 letters, digits or . _ @ : + -")
        if scope not in SCOPES:
            raise ValueError(f"the scope is one of {', '.join(SCOPES)}, not '{scope}'")
        collection = collection.strip()
        if not collection:
            raise ValueError("name the collection the key opens, or '*' for all of them")
        if any(key.name == name for key in self._read().values()):
            raise ValueError(f"a key named '{name}' exists already; revoke it first or pick another name")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(key_id="key_" + secrets.token_hex(6), name=name, collection=collection, scope=scope,
                     created_at=datetime.now(UTC).isoformat(timespec="seconds"))
        # A 1-d placeholder vector: keys are only ever read by id and metadata.
        self._collection(create=True).upsert(ids=[hash_token(token)], embeddings=[[1.0]], metadatas=[key.public()])
        self._forget()
        return key, token

    def revoke(self, name_or_id: str) -> ApiKey | None:
        """Delete the key with this name or key id; None when there is none."""
        found = [(token_hash, key) for token_hash, key in self._read().items() if name_or_id in (key.name, key.key_id)]
        if not found:
            return None
        collection = self._collection(create=False)
        if collection is not None:
            collection.delete(ids=[token_hash for token_hash, _ in found])
        self._forget()
        return found[0][1]

    # ---- what a server asks on every request -----------------------------------------------------
    def _forget(self) -> None:
        with self._lock:
            self._loaded_at = None

    def table(self) -> dict[str, ApiKey]:
        """The keys by token hash, re-read from the store when older than ``ttl_s``."""
        with self._lock:
            now = time.monotonic()
            if self._loaded_at is None or now - self._loaded_at >= self.ttl_s:
                self._table = self._read()
                self._loaded_at = now
            return self._table

    def any(self) -> bool:
        return bool(self.table())

    def lookup(self, token: str) -> ApiKey | None:
        """The key this token belongs to, or None (unknown, revoked, or not a token at all)."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        return self.table().get(hash_token(token))
