"""The knowledge base: Chroma collections of chunks, and a registry of the documents in them.

Chroma has no multi-record transactions, so a document's chunks cannot be written as one unit. The
registry record of a document is its commit mark instead: ingest writes all chunks first, then the
record; delete removes the record first, then the chunks. Chunks that no record vouches for (a
killed ingest or delete) are swept by :meth:`KnowledgeBase.repair`, which ingest runs before it
writes, so a crash never leaves a half-written document behind for long. Chunk ids embed the content
hash, so re-running a killed ingest of the same file rewrites the same ids.

The registry is a Chroma collection too (not a local file) so that it lives wherever the chunks do,
an embedded store or a Chroma server shared by several machines.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chromadb.api import ClientAPI

# Re-exported: callers import the store's names from here (rag.store is the knowledge base's one door).
from rag.chroma_client import (  # noqa: F401
    StoreError, hnsw_configuration, hold_embedded, open_client, unreachable, writing,
)
from rag.reindex import finish_reindex, reembed
from rag.page_image import drop_originals, prune as prune_originals, sweep_originals
from rag.chunk_context import CONTEXT, DOC_TITLE, SECTION, with_context
from rag.settings import Settings
from rag.store_names import (  # noqa: F401
    INTERNAL_COLLECTIONS,
    KEYS_COLLECTION,
    REGISTRY,
    ReservedCollectionError,
    all_collection_names,
    check_user_collection,
    collection_embedder,
    collection_names,
    is_store_internal,
    reserved_reason,
)

_PAGE = 1000  # rows per read when scanning metadata


def _utc(timestamp: str) -> datetime:
    moment = datetime.fromisoformat(timestamp)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def doc_id_for(source: str) -> str:
    """A document is identified by its source name: re-ingesting ``handbook.pdf`` replaces it."""
    return hashlib.sha1(source.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class DocumentRecord:
    doc_id: str
    source: str
    content_sha256: str
    pages: int
    chunks: int
    ingested_at: str
    size_bytes: int

    def as_metadata(self, collection: str) -> dict:
        return {"collection": collection, **self.__dict__}


@dataclass(frozen=True)
class StoredChunk:
    chunk_id: str
    doc_id: str
    source: str
    page: int | None
    text: str
    score: float  # cosine similarity to the query
    doc_title: str = ""  # what the chunk's document is and where in it the chunk sits (ingest.identity)
    section: str = ""
    context: str = ""  # the line retrieval and the reranker read before the text (rag.chunk_context)

    @property
    def read_text(self) -> str:
        """What BM25 indexes and the reranker reads: the context line, then the text."""
        return with_context(self.context, self.text)


def _writes(method: Callable) -> Callable:
    """Run a writing method under the store's write claim: refused at once, in plain words, while another
    process serves this embedded store (see rag.chroma_client)."""

    @functools.wraps(method)
    def wrapper(self: KnowledgeBase, *args, **kwargs):
        with writing(self.settings):
            return method(self, *args, **kwargs)

    return wrapper


def _is_chunk_record(meta: dict | None) -> bool:
    """A chunk carries its document's id and version; registry and key records carry other fields."""
    meta = meta or {}
    return ("doc_id" in meta and "content_sha256" in meta
            and not {"collection", "generation_of", "scope", "key_id"} & meta.keys())


class KnowledgeBase:
    """One named collection of chunks: write, read, list, delete, repair.

    A collection keeps the embedder it was built with: without ``embed_model`` an existing collection
    is opened with its own (so changing the default embedder never strands a collection), a new one
    with the settings'. An explicit ``embed_model`` that differs from the collection's is an error.
    """

    def __init__(self, settings: Settings, name: str | None = None, *, embed_model: str | None = None) -> None:
        self.name = name or settings.collection
        if is_store_internal(self.name):  # the registry swept as chunks would lose every document record
            raise ReservedCollectionError(f"the collection '{self.name}' is the store's own, not one of documents")
        self.settings = settings
        self.client = open_client(settings)
        finish_reindex(self.client, self.name)
        self.embed_model = embed_model or collection_embedder(settings, self.name) or settings.embed_model
        try:
            self.chunks = self.client.get_or_create_collection(
                self.name, metadata={"embed_model": self.embed_model}, configuration=hnsw_configuration(settings),
                embedding_function=None,
            )
        except ValueError as error:
            raise StoreError(f"invalid collection name '{self.name}': {error}") from error
        except Exception as error:  # chromadb's InvalidArgumentError does not subclass ValueError
            if "name" in str(error).lower():
                raise StoreError(
                    f"invalid collection name '{self.name}': use 3-512 letters, digits, '.', '_' or '-', "
                    "starting and ending with a letter or digit"
                ) from error
            raise
        built_with = (self.chunks.metadata or {}).get("embed_model")
        if built_with and built_with != self.embed_model:
            raise StoreError(
                f"collection '{self.name}' was built with the embedder '{built_with}', not "
                f"'{self.embed_model}': query it with that embedder, rebuild it with `rerank-rag reindex --collection "
                f"{self.name} --embed-model {self.embed_model}`, or ingest into another collection"
            )
        self.registry = self.client.get_or_create_collection(REGISTRY, embedding_function=None)

    # ---- reading -------------------------------------------------------------------------------
    def count(self) -> int:
        return self.chunks.count()

    def search(self, query_embedding: Sequence[float], top_k: int, where: dict | None = None) -> list[StoredChunk]:
        """The ``top_k`` nearest chunks of committed documents, most similar first.

        Chunks of a version that is not committed (an ingest still running, or killed and not yet
        swept) or no longer committed (replaced, being deleted) are left out, so readers see each
        document switch from one whole version to the next.
        """
        total = self.chunks.count() if top_k >= 1 else 0
        vector = [list(map(float, query_embedding))]
        asked = min(top_k, total)
        while asked > 0:
            found = self.chunks.query(query_embeddings=vector, n_results=asked, where=where,
                                      include=["documents", "metadatas", "distances"])
            metadatas = found["metadatas"][0]
            committed = self._committed_versions({str(meta.get("doc_id")) for meta in metadatas})
            kept = [
                self._stored_chunk(chunk_id, text, meta, score=1.0 - float(distance))  # cosine distance = 1 - cos
                for chunk_id, text, meta, distance in zip(
                    found["ids"][0], found["documents"][0], metadatas, found["distances"][0], strict=True
                )
                if committed.get(str(meta.get("doc_id"))) == meta.get("content_sha256")
            ]
            # Uncommitted and replaced chunks are dropped after Chroma ranked them, so the nearest
            # ``top_k`` may hold fewer committed ones (a killed ingest's chunks took 8 of 20 slots):
            # ask for more until ``top_k`` are kept or Chroma has no more to give.
            if len(kept) >= top_k or len(found["ids"][0]) < asked or asked >= total:
                return kept[:top_k]
            asked = min(asked * 4, total)
        return []

    def _committed_versions(self, doc_ids: set[str]) -> dict[str, str]:
        """doc_id → committed content sha256, for these documents."""
        if not doc_ids:
            return {}
        rows = self.registry.get(ids=[self._registry_id(doc_id) for doc_id in doc_ids], include=["metadatas"])
        return {str(meta["doc_id"]): str(meta["content_sha256"]) for meta in rows["metadatas"]}

    def documents(self) -> list[DocumentRecord]:
        rows = self.registry.get(where={"collection": self.name}, include=["metadatas"])
        fields = DocumentRecord.__dataclass_fields__
        records = [DocumentRecord(**{k: v for k, v in meta.items() if k in fields}) for meta in rows["metadatas"]]
        return sorted(records, key=lambda record: record.source.lower())

    def document(self, doc_id: str) -> DocumentRecord | None:
        return next((record for record in self.documents() if record.doc_id == doc_id), None)

    def find(self, source_or_doc_id: str) -> DocumentRecord | None:
        return next(
            (r for r in self.documents() if source_or_doc_id in (r.doc_id, r.source)),
            None,
        )

    def sample_chunks(self, n: int) -> list[StoredChunk]:
        """``n`` committed chunks spread evenly over the collection, in a reproducible (id) order."""
        rows = sorted((c for c in self.committed_chunks() if c.text.strip()), key=lambda c: c.chunk_id)
        if not rows or n < 1:
            return []
        step = max(len(rows) / n, 1.0)
        return [rows[int(i * step)] for i in range(min(n, len(rows)))]

    def _chunk_metadata(self) -> Iterator[tuple[str, dict]]:
        offset = 0
        while True:
            page = self.chunks.get(include=["metadatas"], limit=_PAGE, offset=offset)
            if not page["ids"]:
                return
            yield from zip(page["ids"], page["metadatas"], strict=True)
            offset += len(page["ids"])

    def generation(self) -> str | None:
        """A token that changes with every commit or delete in this collection (None before the first).

        One read by id, whatever the collection's size: derived indexes (rag.lexical) compare it on
        every query and read the whole registry (:meth:`fingerprint`) only when it moved.
        """
        rows = self.registry.get(ids=[self._generation_id()], include=["metadatas"])
        return str(rows["metadatas"][0]["generation"]) if rows["ids"] else None

    # ---- writing -------------------------------------------------------------------------------
    def _registry_id(self, doc_id: str) -> str:
        return f"{self.name}::{doc_id}"

    def _generation_id(self) -> str:
        return f"{self.name}::__generation__"

    def _bump_generation(self) -> None:
        # No "collection" key in its metadata, so listing the documents never sees this record.
        self.registry.upsert(ids=[self._generation_id()], embeddings=[[1.0]],
                             metadatas=[{"generation_of": self.name, "generation": uuid.uuid4().hex}])

    @_writes
    def write_document(
        self,
        record: DocumentRecord,
        chunk_ids: list[str],
        texts: list[str],
        embeddings: Sequence[Sequence[float]],
        metadatas: list[dict],
    ) -> None:
        """Write all chunks, then commit the record, then drop the chunks of the replaced version."""
        batch = self.client.get_max_batch_size()
        for start in range(0, len(chunk_ids), batch):
            end = start + batch
            self.chunks.upsert(
                ids=chunk_ids[start:end],
                documents=texts[start:end],
                embeddings=[list(map(float, e)) for e in embeddings[start:end]],
                metadatas=metadatas[start:end],
            )
        # A 1-d placeholder vector: the registry is only ever read by id and metadata.
        self.registry.upsert(
            ids=[self._registry_id(record.doc_id)],
            embeddings=[[1.0]],
            metadatas=[record.as_metadata(self.name)],
        )
        self.chunks.delete(
            where={"$and": [{"doc_id": record.doc_id}, {"content_sha256": {"$ne": record.content_sha256}}]}
        )
        self._bump_generation()

    @_writes
    def delete_document(self, doc_id: str) -> int:
        """Remove a document and all its chunks; returns how many chunks went."""
        chunk_count = len(self.chunks.get(where={"doc_id": doc_id}, include=[])["ids"])
        self.registry.delete(ids=[self._registry_id(doc_id)])
        self.chunks.delete(where={"doc_id": doc_id})
        self._bump_generation()
        prune_originals(self.settings, self.name, doc_id)  # the kept PDF of its page images goes with it
        return chunk_count

    @_writes
    def repair(self, grace_s: float = 0.0) -> int:
        """Delete chunks that no committed document record vouches for; returns how many.

        Those are versions that a newer commit replaced, and uncommitted writes older than
        ``grace_s`` seconds: younger ones may belong to an ingest still running in another process
        (another app server, a CLI), which would lose its chunks just before committing them. Kept PDFs
        of no committed version (page images) go by the same rule (:func:`rag.page_image.sweep_originals`).
        """
        committed = {record.doc_id: record for record in self.documents()}
        now = datetime.now(UTC)
        orphans = []
        for chunk_id, meta in self._chunk_metadata():
            if not _is_chunk_record(meta):
                continue  # not a chunk of a document (someone else's record): never this sweep's to delete
            record = committed.get(str(meta.get("doc_id")))
            if record is not None and record.content_sha256 == meta.get("content_sha256"):
                continue
            written = _utc(str(meta.get("ingested_at", "1970-01-01T00:00:00")))
            superseded = record is not None and written < _utc(record.ingested_at)
            if superseded or (now - written).total_seconds() >= grace_s:
                orphans.append(chunk_id)
        for start in range(0, len(orphans), self.client.get_max_batch_size()):
            self.chunks.delete(ids=orphans[start : start + self.client.get_max_batch_size()])
        sweep_originals(self.settings, self.name, {d: r.content_sha256 for d, r in committed.items()}, grace_s)
        return len(orphans)

    @_writes
    def drop(self) -> None:
        """Delete the whole collection and its registry records."""
        self.registry.delete(where={"collection": self.name})
        self.registry.delete(ids=[self._generation_id()])
        self.client.delete_collection(self.name)
        drop_originals(self.settings, self.name)  # the PDFs kept for its page images

    # ---- what derived indexes read (rag.lexical) --------------------------------------------------
    def fingerprint(self, records: Sequence[DocumentRecord] | None = None) -> str:
        """A hash of the committed versions of this collection: sorted (doc_id, content_sha256).

        An index derived from the chunks (the BM25 index of rag.lexical) stores it and is rebuilt when
        it changes. Only the registry is read, so it is cheap enough to check on every query. Pass
        ``records`` to hash the registry state the caller already read (and reads chunks against).
        """
        records = self.documents() if records is None else records
        digest = hashlib.sha256()
        for doc_id, content_sha256 in sorted((r.doc_id, r.content_sha256) for r in records):
            digest.update(f"{doc_id}\t{content_sha256}\n".encode())
        return digest.hexdigest()

    def committed_chunks(
        self, page_size: int = 2000, records: Sequence[DocumentRecord] | None = None
    ) -> Iterator[StoredChunk]:
        """Every chunk of a committed version (``score`` 0.0), read from Chroma in pages (:meth:`committed_rows`)."""
        for chunk_id, text, meta, _ in self.committed_rows(page_size, records):
            yield self._stored_chunk(chunk_id, text, meta)

    def committed_rows(
        self, page_size: int = 2000, records: Sequence[DocumentRecord] | None = None, *, vectors: bool = False
    ) -> Iterator[tuple[str, str | None, dict, Any]]:
        """(chunk id, text, metadata, vector or None) of every chunk of a committed version, read in pages.

        Never one get() over all ids: chromadb's embedded get() over ~32k ids fails with "too many
        SQL variables". Pages go by offset, and offsets shift when another process adds or deletes
        chunks meanwhile, which could skip a chunk: a document found short of its record's chunk
        count is read again on its own. ``records``: the registry state to read against (default:
        read it now), so a caller can store :meth:`fingerprint` of exactly that state.
        """
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        committed = {r.doc_id: r for r in (self.documents() if records is None else records)}
        seen: set[str] = set()
        found: dict[str, int] = {}
        include = ["documents", "metadatas", *(["embeddings"] if vectors else [])]

        def take(page: dict) -> Iterator[tuple[str, str | None, dict, Any]]:
            embeddings = page.get("embeddings") if vectors else None
            for row, (chunk_id, meta) in enumerate(zip(page["ids"], page["metadatas"], strict=True)):
                record = committed.get(str(meta.get("doc_id")))
                if chunk_id in seen or record is None or meta.get("content_sha256") != record.content_sha256:
                    continue
                seen.add(chunk_id)
                found[record.doc_id] = found.get(record.doc_id, 0) + 1
                yield chunk_id, page["documents"][row], meta, None if embeddings is None else embeddings[row]

        yield from (row for page in self._pages(page_size, include=include) for row in take(page))
        for record in committed.values():
            if found.get(record.doc_id, 0) < record.chunks:
                where = {"$and": [{"doc_id": record.doc_id}, {"content_sha256": record.content_sha256}]}
                yield from (row for page in self._pages(page_size, where, include) for row in take(page))

    def _pages(self, page_size: int, where: dict | None = None,
               include: Sequence[str] = ("documents", "metadatas")) -> Iterator[dict]:
        offset = 0
        while True:
            page = self.chunks.get(where=where, include=list(include), limit=page_size, offset=offset)
            if page["ids"]:
                yield page
            if len(page["ids"]) < page_size:
                return
            offset += len(page["ids"])

    def get_chunks(self, chunk_ids: Sequence[str], page_size: int = 2000) -> list[StoredChunk]:
        """The chunks of ``chunk_ids`` in that order, text and metadata, ``score`` 0.0 for the caller
        to fill (``dataclasses.replace``). Read in pages of ``page_size`` ids. As in :meth:`search`,
        chunks gone or no longer committed (replaced or deleted since an index named them) are left out.
        """
        wanted = list(dict.fromkeys(chunk_ids))
        rows: dict[str, tuple[str, dict]] = {}
        for start in range(0, len(wanted), page_size):
            page = self.chunks.get(ids=wanted[start : start + page_size], include=["documents", "metadatas"])
            rows.update(zip(page["ids"], zip(page["documents"], page["metadatas"], strict=True), strict=True))
        doc_ids = sorted({str(meta.get("doc_id")) for _, meta in rows.values()})
        committed: dict[str, str] = {}
        for start in range(0, len(doc_ids), page_size):
            committed.update(self._committed_versions(set(doc_ids[start : start + page_size])))
        out = []
        for chunk_id in wanted:
            text, meta = rows.get(chunk_id, (None, {}))
            if meta and committed.get(str(meta.get("doc_id"))) == meta.get("content_sha256"):
                out.append(self._stored_chunk(chunk_id, text, meta))
        return out

    @staticmethod
    def _stored_chunk(chunk_id: str, text: str | None, meta: dict, score: float = 0.0) -> StoredChunk:
        return StoredChunk(
            chunk_id=chunk_id,
            doc_id=str(meta.get("doc_id", "")),
            source=str(meta.get("source", "")),
            page=meta.get("page"),
            text=text or "",
            score=score,
            doc_title=str(meta.get(DOC_TITLE) or ""),
            section=str(meta.get(SECTION) or ""),
            context=str(meta.get(CONTEXT) or ""),
        )

    # ---- changing the embedder -----------------------------------------------------------------
    @_writes
    def reembed(self, embed_model: str, embed: Callable[[list[str]], Sequence[Sequence[float]]] | None,
                page_size: int = 500, progress: Callable[[int], None] | None = None) -> int:
        """Rebuild this collection's vectors with ``embed``, in place (:func:`rag.reindex.reembed`)."""
        return reembed(self, embed_model, embed, page_size, progress)
