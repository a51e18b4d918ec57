"""The lexical first stage: BM25 over the committed chunks of a collection, kept beside the store.

Dense MiniLM retrieval misses exact names, numbers and rare terms that BM25 finds; this module is the
BM25 half. Chroma stays the single source of truth: an index is derived from the chunks that the
registry commits (see :mod:`rag.store`) and carries a manifest saying which committed versions it
was built from, so a process that finds the store moved on rebuilds instead of serving stale hits.

On disk, beside the embedded store::

    <data_dir>/bm25/<collection>/
        CURRENT            name of the live folder, switched with os.replace
        idx-<uuid>/        bm25s arrays (memory-mapped on load), chunk_ids.json, manifest.json (last)
        .lock              flock: one build per collection at a time, across processes

A build writes a whole new folder, the manifest last, then points ``CURRENT`` at it and removes the
older folders. A build killed half-way leaves a folder without a manifest that ``CURRENT`` never
names: the previous index stays in use, and the next build sweeps the orphan.

The tokenizer is rag.bm25_tokens, the score matrix rag.bm25_matrix. Tokenizer choices (stemming, stop words, jieba
vs CJK bigrams) and BM25 parameters were measured
with ``experiments/measure_bm25.py``; the tables are in ``docs/bm25.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

try:
    import fcntl
except ImportError:  # Windows: builds in one process are still serialised by the thread lock
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    import bm25s

    from rag.store import DocumentRecord, KnowledgeBase, StoredChunk

log = logging.getLogger(__name__)

# The tokenizer lives in rag.bm25_tokens; its names stay importable from here.
from rag.bm25_tokens import (  # noqa: E402,F401
    DEFAULT_TOKENIZER_OPTIONS, TOKENIZER_VERSION, ChineseMode, Tokenizer, TokenizerOptions, tokenize,
)
# So does the score matrix (rag.bm25_matrix), with its parameters.
from rag.bm25_matrix import B, K1, METHOD, _bm25, _count_terms, _score_matrix  # noqa: E402,F401


# ---- the index -----------------------------------------------------------------------------------
MANIFEST = "manifest.json"
CHUNK_IDS = "chunk_ids.json"


def scoring_label() -> str:
    return f"bm25s-{METHOD}:k1={K1}:b={B}"


class LexicalIndex:
    """BM25 over a fixed list of chunks. Build with :meth:`build`, or :meth:`load` a saved one."""

    def __init__(self, chunk_ids: list[str], retriever: bm25s.BM25 | None, manifest: dict[str, Any]) -> None:
        self.chunk_ids = chunk_ids
        self.retriever = retriever  # None when no chunk has a single token
        self.manifest = manifest
        self.folder: Path | None = None

    def __len__(self) -> int:
        return len(self.chunk_ids)

    @classmethod
    def build(
        cls,
        chunk_ids: Sequence[str],
        texts: Sequence[str],
        *,
        collection: str = "",
        fingerprint: str = "",
        store_chunks: int | None = None,
    ) -> LexicalIndex:
        """Tokenize ``texts`` and index them; the manifest records what the index was built from.

        ``store_chunks`` is the chunk count the store's registry declared when the chunks were read
        (defaults to ``len(chunk_ids)``): freshness compares it, so a store whose readable chunks
        fall short of its records gets a warning at build time, not a rebuild on every query.
        """
        if len(chunk_ids) != len(texts):
            raise ValueError(f"{len(chunk_ids)} chunk ids for {len(texts)} texts")
        retriever = _bm25(texts)
        manifest = {
            "collection": collection,
            "fingerprint": fingerprint,
            "chunks": len(chunk_ids),
            "store_chunks": len(chunk_ids) if store_chunks is None else store_chunks,
            "tokenizer_version": TOKENIZER_VERSION,
            "scoring": scoring_label(),
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "bm25": retriever is not None,  # False: no chunk has a token, no bm25s files
        }
        return cls(list(chunk_ids), retriever, manifest)

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        """The ``k`` best (chunk id, BM25 score), best first; [] when no query term is in the index."""
        if k < 1 or self.retriever is None:
            return []
        token_ids = self.retriever.get_tokens_ids(tokenize(query))
        if not token_ids:
            return []
        scores = self.retriever.get_scores_from_ids(token_ids)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        # bm25s scores every chunk: those sharing no term with the query score 0, and are no hit.
        return [(self.chunk_ids[i], float(scores[i])) for i in top if scores[i] > 0]

    def coverage(self, query: str) -> float:
        """The share of ``query``'s distinct terms that occur in the index: about 1 when the question's words are
        the collection's, near 0 when they are not (a Chinese question over English text, whose only matches are
        numbers). A plain share, not IDF-weighted: one rare word a small collection lacks (a name) must not
        silence BM25. 1 for a query with no terms."""
        terms = set(tokenize(query))
        if not terms:
            return 1.0
        if self.retriever is None:
            return 0.0
        return sum(term in self.retriever.vocab_dict for term in terms) / len(terms)

    def save(self, folder: str | Path) -> None:
        """Write the index into a new folder, the manifest last: a folder with a manifest is whole."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=False)
        if self.retriever is not None:
            self.retriever.save(str(folder), show_progress=False)
        (folder / CHUNK_IDS).write_text(json.dumps(self.chunk_ids), encoding="utf-8")
        for path in folder.iterdir():
            _fsync(path)
        _write_atomic(folder / MANIFEST, json.dumps(self.manifest, indent=1))
        _fsync(folder)
        self.folder = folder

    @classmethod
    def load(cls, folder: str | Path) -> LexicalIndex:
        """Load a saved index, its BM25 matrix memory-mapped; :class:`IndexUnusable` if not whole."""
        import bm25s

        folder = Path(folder)
        try:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
            chunk_ids = json.loads((folder / CHUNK_IDS).read_text(encoding="utf-8"))
            retriever = None
            if manifest.get("bm25"):
                retriever = bm25s.BM25.load(str(folder), mmap=True, show_progress=False)
        except (OSError, ValueError, KeyError) as error:
            raise IndexUnusable(f"{folder}: {type(error).__name__}: {error}") from error
        num_docs = retriever.scores["num_docs"] if retriever is not None else len(chunk_ids)
        if not (len(chunk_ids) == manifest.get("chunks") == num_docs):
            raise IndexUnusable(f"{folder}: {len(chunk_ids)} chunk ids, manifest says {manifest.get('chunks')}")
        index = cls(chunk_ids, retriever, manifest)
        index.folder = folder
        return index


class IndexUnusable(RuntimeError):
    """A saved index folder is missing, half-written or inconsistent: build a new one."""


def _fsync(path: Path) -> None:
    """Flush a file or folder to disk, so a power cut cannot reorder "manifest" before "data"."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if path.is_dir() else 0)
    try:
        fd = os.open(path, flags)
    except OSError:  # folders cannot be opened on Windows: nothing to flush there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_atomic(path: Path, text: str) -> None:
    """Write a temp file beside ``path``, flush it, then rename it over ``path`` in one step."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


# ---- derived from the store, kept beside it --------------------------------------------------------
CURRENT = "CURRENT"
_FOLDER = re.compile(r"idx-[0-9a-f]{32}")


def index_root(data_dir: str | Path, collection: str) -> Path:
    """``<data_dir>/bm25/<collection>``: beside the embedded store, or this machine's own copy when
    the chunks live on a Chroma server (each app process derives its index from the registry)."""
    return Path(data_dir).expanduser().resolve() / "bm25" / collection


@dataclass(frozen=True)
class StoreState:
    """What the registry commits now; an index serves queries only while its manifest matches it."""

    collection: str
    fingerprint: str
    chunks: int  # the committed chunk count the records declare

    @classmethod
    def read(cls, kb: KnowledgeBase) -> tuple[StoreState, list[DocumentRecord]]:
        records = kb.documents()
        return cls(kb.name, kb.fingerprint(records), sum(r.chunks for r in records)), records

    def matches(self, manifest: dict[str, Any]) -> bool:
        return (
            manifest.get("collection") == self.collection
            and manifest.get("fingerprint") == self.fingerprint
            and manifest.get("store_chunks") == self.chunks
            and manifest.get("tokenizer_version") == TOKENIZER_VERSION
            and manifest.get("scoring") == scoring_label()
        )


class LexicalIndexes:
    """The BM25 index of each (data_dir, collection), loaded once and kept in step with the registry.

    :meth:`get` is meant for every query: it reads the registry (``kb.fingerprint()``) and returns
    the loaded index while its manifest matches; when the store moved on (an ingest or delete here,
    or in another process sharing the Chroma server) it loads the index another process already
    built, or builds one. Builds hold a thread lock and an flock on ``<root>/.lock``, so neither two
    threads nor two processes build the same collection at once; the one that waited loads the result.

    That registry read costs about 0.1 ms per document of the collection on embedded Chroma (17 ms
    at 200 documents, 170 ms and more at 2,000; docs/bm25.md), so it is read only when the
    collection's generation token (``KnowledgeBase.generation()``: one read by id, bumped by every
    commit and delete, here or in another process) moved since the last match. ``recheck_s`` > 0 trades exactness
    for it: at most one read per collection per ``recheck_s`` seconds, so another process's ingest
    reaches BM25 hits up to that late. Hits of replaced or deleted versions are still dropped, by
    ``KnowledgeBase.get_chunks``; builds and rebuilds in this process count as checks.
    """

    def __init__(self, page_size: int = 2000, recheck_s: float = 0.0) -> None:
        self.page_size = page_size
        self.recheck_s = recheck_s
        self._loaded: dict[Path, LexicalIndex] = {}
        self._checked: dict[Path, float] = {}  # root -> time.monotonic() of the last match
        self._generations: dict[Path, str | None] = {}  # root -> KnowledgeBase.generation() at that match
        self._locks: dict[Path, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, kb: KnowledgeBase, data_dir: str | Path) -> LexicalIndex:
        """The index of ``kb``'s committed chunks now: the loaded one, the one on disk, or a new build."""
        root = index_root(data_dir, kb.name)
        index = self._loaded.get(root)
        if index is not None and time.monotonic() - self._checked.get(root, -math.inf) < self.recheck_s:
            return index
        # Read before the registry: a commit between the two reads then only costs one more full check.
        generation = kb.generation()
        if (index is not None and generation is not None and self._generations.get(root) == generation
                and index.manifest.get("tokenizer_version") == TOKENIZER_VERSION):
            return index  # nothing was committed or deleted since the index was last found to match
        checked = time.monotonic()
        state, _ = StoreState.read(kb)
        if index is not None and state.matches(index.manifest):
            self._checked[root], self._generations[root] = checked, generation
            return index
        with self._lock(root), _folder_lock(root):
            checked = time.monotonic()
            state, records = StoreState.read(kb)  # the store may have moved on while this thread waited
            index = self._loaded.get(root)
            if index is None or not state.matches(index.manifest):
                index = _load_current(root)
            if index is None or not state.matches(index.manifest):
                index = self._build(kb, root, state, records)
            self._loaded[root], self._checked[root], self._generations[root] = index, checked, generation
            return index

    def rebuild(self, kb: KnowledgeBase, data_dir: str | Path) -> LexicalIndex:
        """Build now from the committed chunks and swap it in, whatever the manifest says."""
        root = index_root(data_dir, kb.name)
        with self._lock(root), _folder_lock(root):
            checked = time.monotonic()
            generation = kb.generation()
            state, records = StoreState.read(kb)
            index = self._loaded[root] = self._build(kb, root, state, records)
            self._checked[root], self._generations[root] = checked, generation
            return index

    def forget(self) -> None:
        """Drop the loaded indexes (tests; a process that changed data_dir)."""
        with self._guard:
            self._loaded.clear()
            self._checked.clear()
            self._generations.clear()

    def _lock(self, root: Path) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(root, threading.Lock())

    def _build(
        self, kb: KnowledgeBase, root: Path, state: StoreState, records: list[DocumentRecord]
    ) -> LexicalIndex:
        """Index the chunks of exactly the versions ``records`` commit, write a new folder, switch
        ``CURRENT`` to it, then remove the older folders (and any a killed build left)."""
        chunk_ids, texts = [], []
        for chunk in kb.committed_chunks(self.page_size, records=records):
            chunk_ids.append(chunk.chunk_id)
            texts.append(chunk.text)
        if len(chunk_ids) != state.chunks:
            log.warning("collection %s: the registry declares %d committed chunks, %d could be read",
                        kb.name, state.chunks, len(chunk_ids))
        index = LexicalIndex.build(
            chunk_ids, texts, collection=kb.name, fingerprint=state.fingerprint, store_chunks=state.chunks
        )
        folder = root / f"idx-{uuid.uuid4().hex}"
        index.save(folder)
        _write_atomic(root / CURRENT, folder.name + "\n")
        _fsync(root)
        _sweep(root, keep=folder.name)
        return index


def _load_current(root: Path) -> LexicalIndex | None:
    """The index ``CURRENT`` names, or None when there is none or it is unusable (rebuilt then)."""
    try:
        name = (root / CURRENT).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if not _FOLDER.fullmatch(name):
        log.warning("%s: CURRENT names %r, not an index folder: rebuilding", root, name[:80])
        return None
    try:
        return LexicalIndex.load(root / name)
    except IndexUnusable as error:
        log.warning("unusable BM25 index, rebuilding: %s", error)
        return None


def _sweep(root: Path, keep: str) -> None:
    """Remove every index folder but ``keep``: replaced ones, and half-written ones of killed builds.

    Runs under the build lock, so no build is writing one of them. A process that still searches a
    removed folder keeps its memory map (POSIX unlinks; the data goes when the map does).
    """
    for child in root.iterdir():
        if child.name.startswith("idx-") and child.name != keep and child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        elif child.name.startswith(".") and child.name.endswith(".tmp"):
            child.unlink(missing_ok=True)


@contextlib.contextmanager
def _folder_lock(root: Path) -> Iterator[None]:
    """An exclusive flock on ``<root>/.lock``; the kernel drops it when its holder dies, even by kill -9."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "a+b") as handle:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


_INDEXES = LexicalIndexes()


def lexical_index(kb: KnowledgeBase, data_dir: str | Path) -> LexicalIndex:
    """The up-to-date BM25 index of ``kb`` (see :meth:`LexicalIndexes.get`); cheap when nothing changed."""
    return _INDEXES.get(kb, data_dir)


def rebuild(kb: KnowledgeBase, data_dir: str | Path) -> LexicalIndex:
    """Build ``kb``'s BM25 index now (after an ingest or delete batch), so no query waits for it."""
    return _INDEXES.rebuild(kb, data_dir)


FILTERED_DEPTH = 20  # a filtered BM25 search reads this many times k hits before it filters them


def lexical_search(kb: KnowledgeBase, data_dir: str | Path, query: str, k: int,
                   sources: Collection[str] | None = None) -> list[StoredChunk]:
    """The BM25 top-``k`` chunks of ``kb`` for ``query``, best first, ``score`` the BM25 score; with ``sources``,
    of those documents only (the same filter as the dense side's Chroma ``where``: BM25's best
    ``FILTERED_DEPTH`` x ``k`` hits are read and those of other documents dropped).

    A hit whose document was replaced or deleted after the freshness check is left out (see
    ``KnowledgeBase.get_chunks``), so this can return fewer than ``k``.
    """
    hits = lexical_index(kb, data_dir).search(query, k if sources is None else k * FILTERED_DEPTH)
    scores = dict(hits)
    chunks = [dataclasses.replace(chunk, score=scores[chunk.chunk_id]) for chunk in kb.get_chunks(list(scores))]
    if sources is not None:
        wanted = set(sources)
        chunks = [chunk for chunk in chunks if chunk.source in wanted][:k]
    return chunks


def lexical_coverage(kb: KnowledgeBase, data_dir: str | Path, query: str) -> float:
    """How much of ``query`` the collection's words cover (:meth:`LexicalIndex.coverage`)."""
    return lexical_index(kb, data_dir).coverage(query)
