"""Files → pages → chunks → embeddings → a Chroma collection, one document at a time.

Idempotency is a content-hash scheme rather than llama-index's ``IngestionPipeline`` with a docstore:
that docstore is a local file beside the vector store, so it can disagree with a Chroma server that
other machines write to, and it commits separately from the vectors. Here the document registry sits
in Chroma itself (see :mod:`rag.store`): unchanged sha256 → skipped; changed → the new chunks replace
the old ones; the registry record is written last, as the commit mark.

>>> ingestor = Ingestor(Settings())
>>> [r.line() for r in ingestor.ingest_paths(["data/sample"])]
['handbook.md: ok 12 chunks', ...]
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from ingest.chunking import chunk_pages, make_splitter
from ingest.identity import situate_chunks
from ingest.document import IngestCancelled
from ingest.loaders import SUPPORTED_SUFFIXES, IngestError, Reading, read_document, safe_source_name
from rag.dense_index import rebuild as rebuild_dense_index, uses_exact
from rag.lexical import rebuild as rebuild_lexical_index
from rag.embedders.models import Embedder, configured_embedder
from rag.page_image import keep_original, prune as prune_originals
from rag.chunk_context import with_context
from rag.settings import Settings
from rag.store import DocumentRecord, KnowledgeBase, StoreError, collection_embedder, doc_id_for

Status = Literal["ok", "skipped", "failed"]

# One writer per process at a time: an ingest starts with a repair that would sweep the chunks another
# thread's ingest (another browser session) has written but not yet committed. Other processes are
# covered by the repair's grace period (see rag.store). Held while a document is written, not while files
# are read and embedded, so a long OCR job of one API client never holds up another's upload; re-entrant so
# a caller (the app's Library page) may hold it over a whole batch.
WRITE_LOCK = threading.RLock()
CANCELLED = "not ingested: the ingest was stopped (Ctrl-C, or the client hung up) before this file was committed"

Progress = Callable[[str, str, int, int], None]  # (source, step, done, total)
EMBED_SLICE = 256  # chunks embedded per progress report: eight of the embedder's batches


@dataclass(frozen=True)
class SourceFile:
    """A file to ingest: its display name (the document's identity) and where its bytes come from.

    The name is cleaned on the way in (no ``..``, no absolute path, no control characters such as
    newlines), so an uploaded ``../../evil.txt`` is stored and shown as ``evil.txt``.
    """

    name: str
    path: Path | None = None
    data: bytes | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", safe_source_name(self.name))

    def size(self) -> int:
        return len(self.data) if self.data is not None else self.path.stat().st_size  # type: ignore[union-attr]

    def read(self) -> bytes:
        return self.data if self.data is not None else self.path.read_bytes()  # type: ignore[union-attr]


@dataclass(frozen=True)
class FileResult:
    source: str
    status: Status
    chunks: int = 0
    pages: int = 0
    reason: str | None = None
    doc_id: str | None = None
    seconds: float = 0.0
    repeated: int = 0  # chunks left out as exact repeats of another chunk of the same document
    running_lines: int = 0  # distinct running headers/footers left out of the text (ingest.furniture)
    ocr_pages: int = 0  # pages (or image frames) read by OCR
    failed_pages: tuple[tuple[int | None, str], ...] = ()  # (page, reason): pages that failed alone

    def line(self) -> str:
        if self.status == "ok":
            notes = []
            if self.repeated:
                notes.append(f"{self.repeated:,} repeated chunks left out, {self.chunks + self.repeated:,} in the file")
            if self.running_lines:
                notes.append(f"{self.running_lines} running line{'s' if self.running_lines != 1 else ''} left out "
                             f"of {self.pages} pages")
            if self.ocr_pages:
                notes.append(f"{self.ocr_pages} page{'s' if self.ocr_pages != 1 else ''} read by OCR")
            notes.extend(f"page {page} failed: {reason}" if page is not None else f"failed: {reason}"
                         for page, reason in self.failed_pages)
            return f"{self.source}: ok {self.chunks} chunks" + (f" ({'; '.join(notes)})" if notes else "")
        if self.status == "skipped":
            return f"{self.source}: skipped ({self.reason or 'unchanged'})"
        return f"{self.source}: failed: {self.reason}"


def expand_paths(paths: Iterable[str | Path]) -> Iterator[SourceFile]:
    """Files as given, and the supported files under folders (named relative to that folder).

    A name is a document's identity, so two different files that would get the same one (``ingest dirA
    dirB``, each with its own ``notes.txt``) are each named by as much of their path as tells them apart
    (``dirA/notes.txt``, ``dirB/notes.txt``): else the second would replace the first. The same file given
    twice keeps its name; :meth:`Ingestor.ingest` reports the second as given twice.
    """
    found: list[tuple[str, Path]] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
                if child.suffix.lower() in SUPPORTED_SUFFIXES:
                    found.append((child.relative_to(path).as_posix(), child))
        else:
            found.append((path.name, path))
    files_named: dict[str, set[Path]] = {}
    for name, path in found:
        files_named.setdefault(name, set()).add(path.resolve())
    for name, path in found:
        clashing = files_named[name]
        yield SourceFile(name if len(clashing) == 1 else _distinct_name(name, path.resolve(), clashing), path=path)


def _distinct_name(name: str, path: Path, clashing: set[Path]) -> str:
    """The shortest end of ``path``, longer than ``name``, that no other file of ``clashing`` ends with."""
    others = [other.parts for other in clashing if other != path]
    for length in range(len(Path(name).parts) + 1, len(path.parts) + 1):
        tail = path.parts[-length:]
        if all(other[-length:] != tail for other in others):
            return "/".join(tail)
    return path.as_posix()


class Ingestor:
    """Writes documents into one collection of the knowledge base."""

    def __init__(self, settings: Settings, collection: str | None = None, *, embedder: Embedder | None = None) -> None:
        self.settings = settings
        if embedder is None:  # an existing collection keeps the embedder it was built with
            name = collection_embedder(settings, collection) or settings.embed_model
            embedder = configured_embedder(settings, name)
        self.embedder = embedder
        self.kb = KnowledgeBase(settings, collection, embed_model=self.embedder.name)
        self.splitter = make_splitter(settings, self.embedder)
        self._batch: dict[str, str] = {}  # set per ingest() call
        self._progress: Progress | None = None
        self._cancel = threading.Event()
        with WRITE_LOCK:
            self.kb.repair(settings.orphan_grace_s)  # sweep what a killed ingest or delete left behind

    def ingest_paths(self, paths: Iterable[str | Path], on_result: Callable[[FileResult], None] | None = None,
                     on_progress: Progress | None = None) -> list[FileResult]:
        return self.ingest(expand_paths(paths), on_result, on_progress)

    def ingest(self, files: Iterable[SourceFile], on_result: Callable[[FileResult], None] | None = None,
               on_progress: Progress | None = None, cancel: threading.Event | None = None) -> list[FileResult]:
        """Ingest each file on its own: one failing never stops the others.

        ``cancel`` set (an API client hung up), or Ctrl-C (KeyboardInterrupt, re-raised once the reading thread
        has stopped): the file being read stops at its next page, and it and the files not yet committed fail
        as ``CANCELLED``; the documents committed so far stay.

        ``on_progress(source, step, done, total)`` follows a large file: "pages read" (or "pages read by OCR")
        of a PDF or an image (called from the parsing thread) and "chunks embedded" of a document of more than one slice of chunks.

        The next file is read, parsed and chunked in a worker thread while this one is embedded:
        pypdf is pure Python while torch releases the GIL, so the two overlap on separate cores.
        """
        results: list[FileResult] = []
        pending = iter(files)
        self._batch = {}  # name → content sha256 of the files of this batch read so far
        self._progress = on_progress
        self._cancel = cancel or threading.Event()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-parse") as parser:
            try:
                upcoming = self._submit_next(parser, pending)
                while upcoming is not None:
                    prepared = upcoming.result()
                    upcoming = self._submit_next(parser, pending)
                    result = prepared if isinstance(prepared, FileResult) else self._commit(prepared)
                    results.append(result)
                    if on_result:
                        on_result(result)
            except BaseException:  # Ctrl-C: the reading thread stops at its next page, so the exit is prompt
                self._cancel.set()
                parser.shutdown(wait=False, cancel_futures=True)
                raise
        with WRITE_LOCK:
            if any(result.status == "ok" for result in results):
                # Once per batch, not per file; queries would rebuild a stale index anyway, but the
                # first question after an ingest should not wait for it.
                try:
                    rebuild_lexical_index(self.kb, self.settings.data_dir)
                    if uses_exact(self.kb, self.settings):
                        rebuild_dense_index(self.kb, self.settings.data_dir)
                except StoreError:
                    pass  # the server went away after the last commit: the next question rebuilds it
        return results

    def _submit_next(self, parser: ThreadPoolExecutor, pending: Iterator[SourceFile]) -> Future | None:
        file = next(pending, None)
        return None if file is None else parser.submit(self._prepare, file)

    def _prepare(self, file: SourceFile) -> _Prepared | FileResult:
        """Read, hash, parse and chunk one file, writing nothing; a FileResult when it is done already."""
        started = time.perf_counter()
        max_bytes = int(self.settings.max_file_mb * 1_000_000)
        try:
            self._check_cancel()
            if not file.data and file.path is not None and not file.path.is_file():
                raise IngestError("no such file")
            if file.size() > max_bytes:
                raise IngestError(
                    f"too large: {file.size() / 1e6:.1f} MB, over the limit of {self.settings.max_file_mb:g} MB "
                    "(RAG_MAX_FILE_MB)"
                )
            data = file.read()
            content_sha256 = hashlib.sha256(data).hexdigest()
            # (files are prepared one at a time, in order, so this batch's names need no lock)
            if file.name in self._batch:
                if self._batch[file.name] == content_sha256:
                    return FileResult(file.name, "skipped", reason="same file given twice",
                                      seconds=time.perf_counter() - started)
                raise IngestError(f"another file of this batch is named '{file.name}' too, and this one would "
                                  "replace it: rename one of them")
            self._batch[file.name] = content_sha256
            doc_id = doc_id_for(file.name)
            existing = self.kb.document(doc_id)
            if existing and existing.content_sha256 == content_sha256:
                # committed already: its PDF kept for page images (if it was ingested before they were kept)
                keep_original(self.settings, self.kb.name, file.name, doc_id, content_sha256, data)
                return FileResult(file.name, "skipped", existing.chunks, existing.pages, doc_id=doc_id,
                                  seconds=time.perf_counter() - started)
            progress = self._progress

            def on_page(done: int, total: int, step: str) -> None:  # after each page: stopped when cancelled
                self._check_cancel()
                if progress:
                    progress(file.name, step, done, total)

            read = read_document(file.name, data, max_bytes=max_bytes, on_page=on_page,
                                 reading=Reading.of(self.settings, stop=self._check_cancel))
            pages = read.pages
            texts, pages_of_texts, repeated = chunk_pages(pages, self.splitter)
            situated = situate_chunks(self.settings, file.name, data, pages, texts, pages_of_texts)
        except (IngestError, StoreError) as error:  # StoreError: a Chroma server gone away fails this file alone
            return FileResult(file.name, "failed", reason=str(error), seconds=time.perf_counter() - started)
        except OSError as error:
            return FileResult(file.name, "failed", reason=f"cannot read the file: {error.strerror or error}",
                              seconds=time.perf_counter() - started)
        except Exception as error:  # noqa: BLE001 - a reader's unforeseen error (a library's own kind, memory)
            # fails this file alone, like every bad file: never the batch, never a traceback
            return FileResult(file.name, "failed", reason=f"cannot be read: {type(error).__name__}: {error}"[:300],
                              seconds=time.perf_counter() - started)
        return _Prepared(file.name, doc_id, content_sha256, len(data), read.page_count or len(pages), texts,
                         pages_of_texts, time.perf_counter() - started, repeated, read.running_lines,
                         frozenset(page.number for page in pages if page.ocr), tuple(read.failed_pages),
                         data if file.name.lower().endswith(".pdf") else None, situated=situated)

    def _check_cancel(self) -> None:
        if self._cancel.is_set():
            raise IngestCancelled(CANCELLED)

    def _commit(self, doc: _Prepared) -> FileResult:
        """Embed one prepared document and write it as a unit (see rag.store)."""
        started = time.perf_counter()
        ingested_at = datetime.now(UTC).isoformat(timespec="seconds")
        metadatas = []
        for index, page in enumerate(doc.page_numbers):
            meta = {"doc_id": doc.doc_id, "source": doc.source, "content_sha256": doc.content_sha256,
                    "ingested_at": ingested_at, "chunk_index": index}
            if page is not None:
                meta["page"] = page
            if page in doc.ocr_pages:  # the UI marks text read by OCR: it may hold misread characters
                meta["ocr"] = True
            metadatas.append(meta | (doc.situated[index] if doc.situated else {}))
        embeddings: list = []
        for start in range(0, len(doc.texts), EMBED_SLICE):  # in slices, to tell progress: no cost in speed
            if self._cancel.is_set():  # uncommitted: nothing of it was written
                return FileResult(doc.source, "failed", reason=CANCELLED,
                                  seconds=doc.seconds + time.perf_counter() - started)
            embeddings.extend(self.embedder.embed_documents(doc.read_texts[start : start + EMBED_SLICE]))
            if self._progress and len(doc.texts) > EMBED_SLICE:
                self._progress(doc.source, "chunks embedded", len(embeddings), len(doc.texts))
        chunk_ids = [f"{doc.doc_id}:{doc.content_sha256[:12]}:{i:05d}" for i in range(len(doc.texts))]
        record = DocumentRecord(doc_id=doc.doc_id, source=doc.source, content_sha256=doc.content_sha256,
                                pages=doc.pages, chunks=len(doc.texts), ingested_at=ingested_at, size_bytes=doc.size)
        with WRITE_LOCK:
            try:
                self.kb.write_document(record, chunk_ids, doc.texts, embeddings, metadatas)
            except StoreError as error:  # the server went away mid-write: uncommitted, so the next repair sweeps it
                return FileResult(doc.source, "failed", reason=str(error),
                                  seconds=doc.seconds + time.perf_counter() - started)
            if doc.original is not None:  # committed: its PDF kept for page images, the older versions removed
                keep_original(self.settings, self.kb.name, doc.source, doc.doc_id, doc.content_sha256, doc.original)
                prune_originals(self.settings, self.kb.name, doc.doc_id, keep=doc.content_sha256)
        return FileResult(doc.source, "ok", len(doc.texts), doc.pages, doc_id=doc.doc_id,
                          seconds=doc.seconds + time.perf_counter() - started, repeated=doc.repeated,
                          running_lines=doc.running_lines, ocr_pages=len(doc.ocr_pages), failed_pages=doc.failed_pages)


@dataclass(frozen=True)
class _Prepared:
    """A parsed and chunked file, not yet embedded nor written."""

    source: str
    doc_id: str
    content_sha256: str
    size: int
    pages: int
    texts: list[str]
    page_numbers: list[int | None]
    seconds: float
    repeated: int = 0
    running_lines: int = 0
    ocr_pages: frozenset[int | None] = frozenset()  # the pages read by OCR (None: an image of one frame)
    failed_pages: tuple[tuple[int | None, str], ...] = ()
    original: bytes | None = None  # a PDF's bytes, kept for its page images once it is committed
    situated: list[dict] | None = None  # each chunk's doc_title, section and context (ingest.identity)

    @property
    def read_texts(self) -> list[str]:
        """What the embedder reads: each chunk's context line before its text (Chroma keeps the text alone)."""
        if not self.situated:
            return self.texts
        return [with_context(meta.get("context"), text) for meta, text in zip(self.situated, self.texts, strict=True)]
