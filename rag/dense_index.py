"""The dense first stage, exact where it is cheap: a collection's vectors as one matrix, searched by one product.

Chroma's HNSW index is approximate, and on chromadb 1.5.9 it is rebuilt on every open by several threads: the same
stored vectors returned 94-96 % of the exact top 50 on a 597-passage set, a different share in each process, and top-1
disagreed with the exact answer for 5 % of questions (issue 34). A reranker cannot promote what the first stage dropped,
and every figure defaults are chosen by moved with it. So up to ``Settings.dense_exact_max_chunks`` chunks the dense
side is exact: the vectors Chroma stores (the single source of truth) are read once into a float32 matrix, L2-normed,
kept beside the store as the BM25 index is (:mod:`rag.derived_index`: manifest, ``CURRENT``, rebuilt when the
collection's generation moves) and memory-mapped on load; a query is one matrix-vector product (BLAS), so its cost
grows with the chunk count while HNSW's barely does; docs/dense.md has the switch-over measured. Above it, Chroma's
HNSW serves, with the settings' recall-minded parameters (:func:`rag.chroma_client.hnsw_configuration`).

On disk: ``<data_dir>/dense/<collection>/CURRENT, idx-<uuid>/ (vectors.npy, source_ids.npy, chunk_ids.json,
sources.json, manifest.json last), .lock``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.derived_index import MANIFEST, DerivedIndexes, IndexUnusable, StoreState, finish_folder

if TYPE_CHECKING:
    from rag.settings import Settings
    from rag.store import DocumentRecord, KnowledgeBase, StoredChunk

log = logging.getLogger(__name__)

KIND = "dense"  # the folder under data_dir
FORMAT = 1  # bump when the files change: older folders are rebuilt
VECTORS, SOURCE_IDS, CHUNK_IDS, SOURCES = "vectors.npy", "source_ids.npy", "chunk_ids.json", "sources.json"


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


class DenseIndex:
    """Exact cosine search over a fixed list of chunk vectors. Build with :meth:`build`, or :meth:`load` a saved one."""

    def __init__(self, chunk_ids: list[str], vectors: np.ndarray, source_ids: np.ndarray, sources: list[str],
                 manifest: dict[str, Any]) -> None:
        self.chunk_ids, self.vectors, self.source_ids, self.sources = chunk_ids, vectors, source_ids, sources
        self.manifest = manifest

    def __len__(self) -> int:
        return len(self.chunk_ids)

    @classmethod
    def build(cls, chunk_ids: Sequence[str], vectors: Sequence[Sequence[float]] | np.ndarray,
              sources: Sequence[str], *, state: StoreState | None = None, embed_model: str = "") -> DenseIndex:
        """Index these vectors, rows in chunk-id order so that equal scores rank alike in every build."""
        if not len(chunk_ids) == len(vectors) == len(sources):
            raise ValueError(f"{len(chunk_ids)} chunk ids, {len(vectors)} vectors, {len(sources)} sources")
        order = sorted(range(len(chunk_ids)), key=chunk_ids.__getitem__)
        matrix = np.asarray(vectors, dtype=np.float32)
        if matrix.ndim != 2:  # an empty collection: no rows, nor a dimension to read
            matrix = matrix.reshape(len(chunk_ids), -1) if len(chunk_ids) else np.zeros((0, 0), dtype=np.float32)
        names = sorted(set(sources))
        number = {name: i for i, name in enumerate(names)}
        manifest = {
            **(state or StoreState("", "", len(chunk_ids))).stamp(), "chunks": len(chunk_ids),
            "embed_model": embed_model, "dimension": int(matrix.shape[1]), "format": FORMAT,
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        return cls([chunk_ids[i] for i in order], _unit_rows(matrix[order]),
                   np.array([number[sources[i]] for i in order], dtype=np.int32), names, manifest)

    def search(self, query_vector: Sequence[float], k: int,
               sources: Collection[str] | None = None) -> list[tuple[str, float]]:
        """The ``k`` nearest (chunk id, cosine), most similar first; with ``sources``, among those documents only.
        Ties keep chunk-id order, so the same question ranks alike in every process."""
        if k < 1 or not self.chunk_ids:
            return []
        query = np.asarray(query_vector, dtype=np.float32).ravel()
        if query.shape[0] != self.vectors.shape[1]:
            raise ValueError(f"a {query.shape[0]}-dimensional query for {self.vectors.shape[1]}-dimensional vectors: "
                             "the question was embedded by another model than the collection's")
        norm = float(np.linalg.norm(query))
        scores = self.vectors @ (query / norm if norm > 0 else query)
        if sources is not None:
            asked = set(sources)
            wanted = [i for i, name in enumerate(self.sources) if name in asked]
            scores = np.where(np.isin(self.source_ids, wanted), scores, -np.inf)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((top, -scores[top]))]
        return [(self.chunk_ids[i], float(scores[i])) for i in top if np.isfinite(scores[i])]

    def save(self, folder: str | Path) -> None:
        """Write the index into a new folder, the manifest last: a folder with a manifest is whole."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=False)
        np.save(folder / VECTORS, self.vectors)
        np.save(folder / SOURCE_IDS, self.source_ids)
        (folder / CHUNK_IDS).write_text(json.dumps(self.chunk_ids), encoding="utf-8")
        (folder / SOURCES).write_text(json.dumps(self.sources), encoding="utf-8")
        finish_folder(folder, json.dumps(self.manifest, indent=1))

    @classmethod
    def load(cls, folder: str | Path) -> DenseIndex:
        """Load a saved index, its vectors memory-mapped; :class:`IndexUnusable` if not whole."""
        folder = Path(folder)
        try:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
            chunk_ids = json.loads((folder / CHUNK_IDS).read_text(encoding="utf-8"))
            sources = json.loads((folder / SOURCES).read_text(encoding="utf-8"))
            vectors = np.load(folder / VECTORS, mmap_mode="r")
            source_ids = np.load(folder / SOURCE_IDS)
        except (OSError, ValueError, KeyError) as error:
            raise IndexUnusable(f"{folder}: {type(error).__name__}: {error}") from error
        if not (len(chunk_ids) == manifest.get("chunks") == vectors.shape[0] == source_ids.shape[0]):
            raise IndexUnusable(f"{folder}: {len(chunk_ids)} chunk ids, {vectors.shape[0]} vectors, manifest says "
                                f"{manifest.get('chunks')}")
        return cls(chunk_ids, vectors, source_ids, sources, manifest)


def _build(kb: KnowledgeBase, state: StoreState, records: list[DocumentRecord]) -> DenseIndex:
    """Read the vectors of exactly the versions ``records`` commit, in pages, into one matrix."""
    chunk_ids: list[str] = []
    sources: list[str] = []
    rows: list[np.ndarray] = []
    for chunk_id, _, meta, vector in kb.committed_rows(2000, records, vectors=True):
        chunk_ids.append(chunk_id)
        sources.append(str(meta.get("source", "")))
        rows.append(np.asarray(vector, dtype=np.float32))
    if len(chunk_ids) != state.chunks:
        log.warning("collection %s: the registry declares %d committed chunks, %d could be read",
                    kb.name, state.chunks, len(chunk_ids))
    matrix = np.vstack(rows) if rows else np.zeros((0, 0), dtype=np.float32)
    return DenseIndex.build(chunk_ids, matrix, sources, state=state, embed_model=kb.embed_model)


def _is_current(manifest: dict[str, Any]) -> bool:
    return manifest.get("format") == FORMAT


_INDEXES: DerivedIndexes[DenseIndex] = DerivedIndexes(KIND, build=_build, load=DenseIndex.load, is_current=_is_current)


def dense_index(kb: KnowledgeBase, data_dir: str | Path) -> DenseIndex:
    """The up-to-date exact index of ``kb`` (see :meth:`DerivedIndexes.get`); cheap when nothing changed."""
    return _INDEXES.get(kb, data_dir)


def rebuild(kb: KnowledgeBase, data_dir: str | Path) -> DenseIndex:
    """Build ``kb``'s exact index now (after an ingest or delete batch), so no query waits for it."""
    return _INDEXES.rebuild(kb, data_dir)


def forget() -> None:
    """Drop the loaded indexes: the next search loads from disk, as a process that did not build them would."""
    _INDEXES.forget()


def uses_exact(kb: KnowledgeBase, settings: Settings) -> bool:
    """Whether ``kb``'s dense side is searched exactly: at most ``dense_exact_max_chunks`` chunks stored."""
    return kb.count() <= settings.dense_exact_max_chunks


def dense_search(kb: KnowledgeBase, settings: Settings, query_vector: Sequence[float], k: int,
                 sources: Collection[str] | None = None) -> list[StoredChunk]:
    """The ``k`` chunks of ``kb`` nearest to ``query_vector``, most similar first, ``score`` the cosine: exact up to
    ``dense_exact_max_chunks`` chunks, Chroma's HNSW above; with ``sources``, of those documents only.

    An exact hit whose document was replaced or deleted after the freshness check is left out (see
    ``KnowledgeBase.get_chunks``), so this can return fewer than ``k``.
    """
    if not uses_exact(kb, settings):
        return kb.search(query_vector, k, where=None if sources is None else {"source": {"$in": list(sources)}})
    hits = dense_index(kb, settings.data_dir).search(query_vector, k, sources)
    scores = dict(hits)
    return [dataclasses.replace(chunk, score=scores[chunk.chunk_id]) for chunk in kb.get_chunks(list(scores))]
