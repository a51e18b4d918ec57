"""Indexes derived from a collection's committed chunks and kept beside the store: BM25 (:mod:`rag.lexical`) and
the exact dense matrix (:mod:`rag.dense_index`). Both follow one recipe, kept here once.

Chroma stays the single source of truth: an index is built from the chunks that the registry commits (see
:mod:`rag.store`) and carries a manifest saying which committed versions it was built from, so a process that finds
the store moved on rebuilds instead of serving stale hits. On disk, beside the embedded store::

    <data_dir>/<kind>/<collection>/
        CURRENT            name of the live folder, switched with os.replace
        idx-<uuid>/        the index's files, manifest.json written last
        .lock              flock: one build per collection at a time, across processes

A build writes a whole new folder, the manifest last, then points ``CURRENT`` at it and removes the older folders.
A build killed half-way leaves a folder without a manifest that ``CURRENT`` never names: the previous index stays in
use, and the next build sweeps the orphan.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

try:
    import fcntl
except ImportError:  # Windows: builds in one process are still serialised by the thread lock
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from rag.store import DocumentRecord, KnowledgeBase

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
CURRENT = "CURRENT"
_FOLDER = re.compile(r"idx-[0-9a-f]{32}")


class IndexUnusable(RuntimeError):
    """A saved index folder is missing, half-written or inconsistent: build a new one."""


class DerivedIndex(Protocol):
    manifest: dict[str, Any]

    def save(self, folder: Path) -> None: ...


Index = TypeVar("Index", bound=DerivedIndex)


def fsync(path: Path) -> None:
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


def write_atomic(path: Path, text: str) -> None:
    """Write a temp file beside ``path``, flush it, then rename it over ``path`` in one step."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def finish_folder(folder: Path, manifest_json: str) -> None:
    """Flush a new index folder's files, then write its manifest: a folder with a manifest is whole."""
    for path in folder.iterdir():
        fsync(path)
    write_atomic(folder / MANIFEST, manifest_json)
    fsync(folder)


def index_root(data_dir: str | Path, kind: str, collection: str) -> Path:
    """``<data_dir>/<kind>/<collection>``: beside the embedded store, or this machine's own copy when the chunks live
    on a Chroma server (each app process derives its indexes from the registry)."""
    return Path(data_dir).expanduser().resolve() / kind / collection


@dataclass(frozen=True)
class StoreState:
    """What the registry commits now; an index serves queries only while its manifest matches it.

    The generation token is part of it because a collection's chunks can change while its documents do not: a
    reindex re-embeds them (new vectors) or finds their context lines again (new BM25 text), and bumps it.
    """

    collection: str
    fingerprint: str
    chunks: int  # the committed chunk count the records declare
    generation: str | None = None

    @classmethod
    def read(cls, kb: KnowledgeBase) -> tuple[StoreState, list[DocumentRecord]]:
        generation = kb.generation()  # read first: a commit in between then only costs one more rebuild
        records = kb.documents()
        return cls(kb.name, kb.fingerprint(records), sum(r.chunks for r in records), generation), records

    def stamp(self) -> dict[str, Any]:
        """What a manifest records of the state it was built from."""
        return {"collection": self.collection, "fingerprint": self.fingerprint, "store_chunks": self.chunks,
                "generation": self.generation}

    def matches(self, manifest: dict[str, Any]) -> bool:
        return (
            manifest.get("collection") == self.collection
            and manifest.get("fingerprint") == self.fingerprint
            and manifest.get("store_chunks") == self.chunks
            and manifest.get("generation") == self.generation
        )


class DerivedIndexes(Generic[Index]):
    """The index of one kind for each (data_dir, collection), loaded once and kept in step with the registry.

    :meth:`get` is meant for every query: it returns the loaded index while its manifest matches the registry; when
    the store moved on (an ingest or delete here, or in another process sharing the Chroma server) it loads the
    index another process already built, or builds one. Builds hold a thread lock and an flock on ``<root>/.lock``,
    so neither two threads nor two processes build the same collection at once; the one that waited loads the result.

    The registry read costs about 0.1 ms per document on embedded Chroma (docs/bm25.md), so it is read only when the
    collection's generation token (``KnowledgeBase.generation()``: one read by id, bumped by every commit and delete,
    here or in another process) moved since the last match. ``recheck_s`` > 0 trades exactness for it: at most one
    read per collection per ``recheck_s`` seconds. ``is_current(manifest)`` says whether a saved index was made by
    this code (tokenizer, scoring, format versions); ``build(kb, records)`` makes one from exactly those records.
    """

    def __init__(self, kind: str, *, build: Callable[[KnowledgeBase, StoreState, list[DocumentRecord]], Index],
                 load: Callable[[Path], Index], is_current: Callable[[dict[str, Any]], bool],
                 recheck_s: float = 0.0) -> None:
        self.kind = kind
        self._build_index, self._load_index, self._is_current = build, load, is_current
        self.recheck_s = recheck_s
        self._loaded: dict[Path, Index] = {}
        self._checked: dict[Path, float] = {}  # root -> time.monotonic() of the last match
        self._generations: dict[Path, str | None] = {}  # root -> KnowledgeBase.generation() at that match
        self._locks: dict[Path, threading.Lock] = {}
        self._guard = threading.Lock()

    def root(self, data_dir: str | Path, collection: str) -> Path:
        return index_root(data_dir, self.kind, collection)

    def _matches(self, state: StoreState, index: Index | None) -> bool:
        return index is not None and state.matches(index.manifest) and self._is_current(index.manifest)

    def get(self, kb: KnowledgeBase, data_dir: str | Path) -> Index:
        """The index of ``kb``'s committed chunks now: the loaded one, the one on disk, or a new build."""
        root = self.root(data_dir, kb.name)
        index = self._loaded.get(root)
        if index is not None and time.monotonic() - self._checked.get(root, -math.inf) < self.recheck_s:
            return index
        # Read before the registry: a commit between the two reads then only costs one more full check.
        generation = kb.generation()
        if (index is not None and generation is not None and self._generations.get(root) == generation
                and self._is_current(index.manifest)):
            return index  # nothing was committed or deleted since the index was last found to match
        checked = time.monotonic()
        state, _ = StoreState.read(kb)
        if self._matches(state, index):
            self._checked[root], self._generations[root] = checked, generation
            return index  # type: ignore[return-value] - _matches saw it is not None
        with self._lock(root), folder_lock(root):
            checked = time.monotonic()
            state, records = StoreState.read(kb)  # the store may have moved on while this thread waited
            index = self._loaded.get(root)
            if not self._matches(state, index):
                index = self._load_current(root)
            if not self._matches(state, index):
                index = self._publish(root, self._build_index(kb, state, records))
            self._loaded[root], self._checked[root], self._generations[root] = index, checked, generation
            return index  # type: ignore[return-value]

    def rebuild(self, kb: KnowledgeBase, data_dir: str | Path) -> Index:
        """Build now from the committed chunks and swap it in, whatever the manifest says."""
        root = self.root(data_dir, kb.name)
        with self._lock(root), folder_lock(root):
            checked = time.monotonic()
            generation = kb.generation()
            state, records = StoreState.read(kb)
            index = self._loaded[root] = self._publish(root, self._build_index(kb, state, records))
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

    def _publish(self, root: Path, index: Index) -> Index:
        """Save ``index`` into a new folder, switch ``CURRENT`` to it, then remove the older folders (and any a
        killed build left)."""
        folder = root / f"idx-{uuid.uuid4().hex}"
        index.save(folder)
        write_atomic(root / CURRENT, folder.name + "\n")
        fsync(root)
        _sweep(root, keep=folder.name)
        return index

    def _load_current(self, root: Path) -> Index | None:
        """The index ``CURRENT`` names, or None when there is none or it is unusable (rebuilt then)."""
        try:
            name = (root / CURRENT).read_text(encoding="utf-8").strip()
        except OSError:
            return None
        if not _FOLDER.fullmatch(name):
            log.warning("%s: CURRENT names %r, not an index folder: rebuilding", root, name[:80])
            return None
        try:
            return self._load_index(root / name)
        except IndexUnusable as error:
            log.warning("unusable %s index, rebuilding: %s", self.kind, error)
            return None


def _sweep(root: Path, keep: str) -> None:
    """Remove every index folder but ``keep``: replaced ones, and half-written ones of killed builds.

    Runs under the build lock, so no build is writing one of them. A process that still searches a removed folder
    keeps its memory map (POSIX unlinks; the data goes when the map does).
    """
    for child in root.iterdir():
        if child.name.startswith("idx-") and child.name != keep and child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        elif child.name.startswith(".") and child.name.endswith(".tmp"):
            child.unlink(missing_ok=True)


@contextlib.contextmanager
def folder_lock(root: Path) -> Iterator[None]:
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
