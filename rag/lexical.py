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

Tokenizer choices (stemming, stop words, jieba vs CJK bigrams) and BM25 parameters were measured
with ``scripts/measure_bm25.py``; the tables are in ``docs/bm25.md``.
"""

from __future__ import annotations

import array
import collections
import contextlib
import dataclasses
import itertools
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
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import Stemmer

try:
    import fcntl
except ImportError:  # Windows: builds in one process are still serialised by the thread lock
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    import bm25s
    import jieba

    from rag.store import DocumentRecord, KnowledgeBase, StoredChunk

log = logging.getLogger(__name__)

ChineseMode = Literal["bigrams", "jieba", "jieba-search", "jieba+bigrams"]

# ---- tokenizer -----------------------------------------------------------------------------------
# CJK ideographs (URO, extension A, compatibility, extensions B-F); other scripts are read as words.
_CJK = "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef"
_WORD = re.compile(rf"[^\W_{_CJK}]+")  # a run of letters and digits of any other script
_CJK_RUN = re.compile(rf"[{_CJK}]+")
_CJK_CHAR = re.compile(rf"[{_CJK}]")
_CJK_BIGRAM = re.compile(rf"(?=([{_CJK}]{{2}}))")  # overlapping: every pair of adjacent ideographs

# bm25s's English list (33 words), kept here so the token stream does not change with a bm25s upgrade.
_STOPWORDS_EN = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there "
    "these they this to was will with".split()
)


@dataclass(frozen=True)
class TokenizerOptions:
    """What the tokenizer does; the defaults are the measured winners (docs/bm25.md)."""

    stem: bool = True  # Snowball English stemmer on non-CJK words
    stopwords: bool = True  # drop the 33 English stop words
    chinese: ChineseMode = "bigrams"  # CJK unigrams + bigrams, or jieba words (+ search mode / + bigrams)

    def label(self) -> str:
        return f"stem={'en' if self.stem else 'off'},stop={'en' if self.stopwords else 'off'},zh={self.chinese}"


class Tokenizer:
    """Text → BM25 terms, the same function for chunks and queries; the order of terms is not kept
    (BM25 counts them): words first, then CJK characters, then CJK bigrams.

    Runs of letters and digits other than CJK ideographs are lowercased words (stop words dropped,
    stemmed); runs of CJK ideographs become characters and bigrams (or jieba words). Each script is
    found by its own pattern in the same text, so mixed text such as ``"e-bike电池充电"`` needs no
    language detection, and a bigram never spans punctuation or a Latin word. Regex scans over the
    whole text rather than a Python loop per run: tokenizing is most of a rebuild's time.

    Safe to call from several threads: jieba, when chosen, initialises once under a lock, and each
    thread gets its own stemmer (a PyStemmer object must not be used by two threads at once).
    """

    def __init__(self, options: TokenizerOptions = TokenizerOptions()) -> None:
        self.options = options
        self._jieba: jieba.Tokenizer | None = None
        self._jieba_lock = threading.Lock()
        self._local = threading.local()

    def __call__(self, text: str) -> list[str]:
        text = text.lower()
        tokens = self._words(_WORD.findall(text))
        if self.options.chinese in ("bigrams", "jieba+bigrams"):
            tokens += _CJK_CHAR.findall(text)
            tokens += _CJK_BIGRAM.findall(text)
        if self.options.chinese != "bigrams":
            for run in _CJK_RUN.findall(text):
                tokens += self._jieba_words(run)
        return tokens

    def _words(self, words: list[str]) -> list[str]:
        if self.options.stopwords:
            words = [w for w in words if w not in _STOPWORDS_EN]
        if self.options.stem:
            return self._stemmer().stemWords(words)
        return words

    def _jieba_words(self, run: str) -> list[str]:
        segmenter = self._segmenter()
        return segmenter.lcut_for_search(run) if self.options.chinese == "jieba-search" else segmenter.lcut(run)

    def _stemmer(self) -> Stemmer.Stemmer:
        stemmer = getattr(self._local, "stemmer", None)
        if stemmer is None:
            # maxCacheSize 0: PyStemmer's own cache makes stemWords twice as slow on chunk text.
            stemmer = self._local.stemmer = Stemmer.Stemmer("english", 0)
        return stemmer

    def _segmenter(self) -> jieba.Tokenizer:
        """jieba with its packaged dictionary, loaded on the first Chinese text (about 1 s), once."""
        if self._jieba is None:
            with self._jieba_lock:
                if self._jieba is None:
                    import jieba

                    jieba.setLogLevel(logging.WARNING)  # it prints "Building prefix dict..." to stderr
                    segmenter = jieba.Tokenizer()
                    segmenter.initialize()
                    self._jieba = segmenter
        return self._jieba


DEFAULT_TOKENIZER_OPTIONS = TokenizerOptions()
_TOKENIZER = Tokenizer(DEFAULT_TOKENIZER_OPTIONS)

# Part of every manifest: an index whose tokens came from another tokenizer is rebuilt, never used.
# Bump the leading revision whenever the code above changes what tokens come out; PyStemmer's
# version is in it because new Snowball rules change stems (add jieba's if the default uses it).
TOKENIZER_VERSION = f"1:{DEFAULT_TOKENIZER_OPTIONS.label()}:pystemmer-{Stemmer.version()}"


def tokenize(text: str) -> list[str]:
    """The BM25 terms of ``text``: lowercased, stemmed words and digits without English stop words;
    CJK characters and their bigrams."""
    return _TOKENIZER(text)


# ---- the index -----------------------------------------------------------------------------------
K1 = 1.2
B = 0.75
METHOD = "lucene"
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


def _bm25(texts: Sequence[str]) -> bm25s.BM25 | None:
    """A bm25s retriever over ``texts`` (None when there is no term at all), its matrix built here.

    ``bm25s.BM25.index`` counts terms in pure Python: 5.2 s of CPU for 20k chunks where
    :func:`_score_matrix` takes 0.3 s (docs/bm25.md) for the same matrix (the tests compare them),
    leaving tokenizing as the main cost of a build. bm25s still scores queries, saves the matrix
    and memory-maps it.
    """
    import bm25s

    vocab, term_ids, lengths = _count_terms(texts)
    if not vocab:
        return None
    retriever = bm25s.BM25(k1=K1, b=B, method=METHOD)
    retriever.scores = _score_matrix(term_ids, lengths, len(vocab))
    retriever.vocab_dict = vocab
    retriever.unique_token_ids_set = set(range(len(vocab)))
    retriever.nonoccurrence_array = None
    return retriever


def _count_terms(texts: Sequence[str]) -> tuple[dict[str, int], np.ndarray, np.ndarray]:
    """Tokenize: (term → id, every chunk's term ids one after another, each chunk's length)."""
    vocab: dict[str, int] = collections.defaultdict(itertools.count().__next__)
    term_ids = array.array("i")
    lengths = np.zeros(len(texts), dtype=np.int64)
    for row, text in enumerate(texts):
        terms = tokenize(text)
        lengths[row] = len(terms)
        term_ids.extend([vocab[term] for term in terms])
    return dict(vocab), np.frombuffer(term_ids, dtype=np.intc), lengths


def _score_matrix(term_ids: np.ndarray, lengths: np.ndarray, n_terms: int) -> dict[str, Any]:
    """BM25 (Lucene variant, as bm25s's "lucene") scores of every (term, chunk) pair, in bm25s's
    CSC layout: one column per term, its rows the chunks that hold it, in chunk order."""
    n_docs = len(lengths)
    # A key per term occurrence, term-major: sorted, a run of equal keys is one term frequency.
    keys = np.multiply(term_ids, n_docs, dtype=np.int64)
    keys += np.repeat(np.arange(n_docs, dtype=np.int64), lengths)
    keys.sort()
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    tf = np.diff(starts, append=len(keys)).astype(np.float32)
    terms, rows = np.divmod(keys[starts], n_docs)
    del keys, starts
    df = np.bincount(terms, minlength=n_terms)
    idf = np.log1p((n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)
    norm = (K1 * (1 - B + B * lengths / lengths.mean())).astype(np.float32)
    indptr = np.zeros(n_terms + 1, dtype=np.int64)
    np.cumsum(df, out=indptr[1:])
    rows = rows.astype(np.int32)
    return {"data": idf[terms] * tf / (tf + norm[rows]), "indices": rows, "indptr": indptr, "num_docs": n_docs}


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
