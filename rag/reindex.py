"""Rebuilding a collection's vectors in place: another embedder, or new HNSW parameters (``rerank-rag reindex``).

The committed chunks are copied with their ids, texts and metadata into a staging collection ``<name>.reindex``,
created with the settings' HNSW parameters (:func:`rag.chroma_client.hnsw_configuration`) and embedded by ``embed``;
once complete (marked in its metadata) the old collection is dropped and the staging one takes its name. The
registry is untouched: same documents, same chunk ids, so the BM25 index stays valid (the dense one is rebuilt: the
generation moves). A kill before the swap leaves the old collection in use (the next reindex starts over); a kill
during the swap is finished by :func:`finish_reindex` when the store is next opened.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from chromadb.api import ClientAPI

from rag.chroma_client import hnsw_configuration
from rag.chunk_context import with_context

if TYPE_CHECKING:
    from rag.store import KnowledgeBase


def hnsw_outdated(kb: KnowledgeBase) -> bool:
    """Whether ``kb``'s collection was built with other HNSW parameters than the settings' (those fixed at creation:
    a collection made before they were set, or under other settings); ``rerank-rag reindex`` moves it to them."""
    built = (kb.chunks.configuration or {}).get("hnsw") or {}
    wanted = hnsw_configuration(kb.settings)["hnsw"]
    return any(built.get(key) != wanted[key] for key in ("space", "max_neighbors", "ef_construction"))


def reembed(kb: KnowledgeBase, embed_model: str, embed: Callable[[list[str]], Sequence[Sequence[float]]] | None,
            page_size: int = 500, progress: Callable[[int], None] | None = None) -> int:
    """Copy ``kb``'s committed chunks into a new collection embedded by ``embed`` (None: their stored vectors, when
    only the HNSW parameters change), then swap it in; returns the chunks copied. Call it through
    ``KnowledgeBase.reembed``, which holds the store's write claim."""
    staging_name = f"{kb.name}.reindex"
    try:
        kb.client.delete_collection(staging_name)
    except Exception:  # noqa: BLE001 - none left over
        pass
    staging = kb.client.create_collection(
        staging_name, metadata={"embed_model": embed_model}, configuration=hnsw_configuration(kb.settings),
        embedding_function=None)
    copied = 0
    rows = kb.committed_rows(page_size, vectors=embed is None)
    while page := [row for _, row in zip(range(page_size), rows)]:
        ids, texts, metas, vectors = map(list, zip(*page, strict=True))
        if embed is not None:
            vectors = embed([with_context(meta.get("context"), t or "") for t, meta in zip(texts, metas, strict=True)])
        staging.upsert(ids=ids, documents=texts, metadatas=metas, embeddings=[list(map(float, v)) for v in vectors])
        copied += len(ids)
        if progress:
            progress(copied)
    staging.modify(metadata={"embed_model": embed_model, "reindex_complete": True})
    kb.client.delete_collection(kb.name)
    finish_reindex(kb.client, kb.name)
    kb.chunks = kb.client.get_collection(kb.name, embedding_function=None)
    kb.embed_model = embed_model
    kb._bump_generation()
    return copied


def finish_reindex(client: ClientAPI, name: str) -> None:
    """Give a complete staging collection its name when a reindex was killed between drop and rename."""
    try:
        staging = client.get_collection(f"{name}.reindex")
    except Exception:  # noqa: BLE001 - no reindex under way
        return
    if not (staging.metadata or {}).get("reindex_complete"):
        return
    if any(c.name == name for c in client.list_collections()):
        return  # the old one is still there: the reindex did not reach its swap
    metadata = {k: v for k, v in (staging.metadata or {}).items() if k not in ("reindex_complete", "hnsw:space")}
    staging.modify(name=name, metadata=metadata)
