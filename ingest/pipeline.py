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
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, UTC
from pathlib import Path
from typing import Literal

from ingest.chunking import make_splitter
from ingest.loaders import SUPPORTED_SUFFIXES, IngestError, PageText, load_document, safe_source_name
from rag.lexical import rebuild as rebuild_lexical_index
from rag.models import Embedder, load_embedder
from rag.settings import Settings
from rag.store import DocumentRecord, KnowledgeBase, collection_embedder, doc_id_for

Status = Literal["ok", "skipped", "failed"]

# One writer per process at a time: an ingest starts with a repair that would sweep the chunks another
# thread's ingest (another browser session) has written but not yet committed. Other processes are
# covered by the repair's grace period (see rag.store). Re-entrant so a batch can hold it throughout.
WRITE_LOCK = threading.RLock()


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

    def line(self) -> str:
        if self.status == "ok":
            return f"{self.source}: ok {self.chunks} chunks"
        if self.status == "skipped":
            return f"{self.source}: skipped (unchanged)"
        return f"{self.source}: failed: {self.reason}"


def expand_paths(paths: Iterable[str | Path]) -> Iterator[SourceFile]:
    """Files as given, and the supported files under folders (named relative to that folder)."""
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
                if child.suffix.lower() in SUPPORTED_SUFFIXES:
                    yield SourceFile(child.relative_to(path).as_posix(), path=child)
        else:
            yield SourceFile(path.name, path=path)


class Ingestor:
    """Writes documents into one collection of the knowledge base."""

    def __init__(self, settings: Settings, collection: str | None = None, *, embedder: Embedder | None = None) -> None:
        self.settings = settings
        if embedder is None:  # an existing collection keeps the embedder it was built with
            name = collection_embedder(settings, collection) or settings.embed_model
            embedder = load_embedder(name, settings.device, settings.embed_batch_size)
        self.embedder = embedder
        self.kb = KnowledgeBase(settings, collection, embed_model=self.embedder.name)
        self.splitter = make_splitter(settings, self.embedder)
        with WRITE_LOCK:
            self.kb.repair(settings.orphan_grace_s)  # sweep what a killed ingest or delete left behind

    def ingest_paths(self, paths: Iterable[str | Path], on_result: Callable[[FileResult], None] | None = None) -> list[FileResult]:
        return self.ingest(expand_paths(paths), on_result)

    def ingest(self, files: Iterable[SourceFile], on_result: Callable[[FileResult], None] | None = None) -> list[FileResult]:
        """Ingest each file on its own: one failing never stops the others.

        The next file is read, parsed and chunked in a worker thread while this one is embedded:
        pypdf is pure Python while torch releases the GIL, so the two overlap on separate cores.
        """
        results: list[FileResult] = []
        pending = iter(files)
        with WRITE_LOCK, ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-parse") as parser:
            upcoming = self._submit_next(parser, pending)
            while upcoming is not None:
                prepared = upcoming.result()
                upcoming = self._submit_next(parser, pending)
                result = prepared if isinstance(prepared, FileResult) else self._commit(prepared)
                results.append(result)
                if on_result:
                    on_result(result)
            if any(result.status == "ok" for result in results):
                # Once per batch, not per file; queries would rebuild a stale index anyway, but the
                # first question after an ingest should not wait for it.
                rebuild_lexical_index(self.kb, self.settings.data_dir)
        return results

    def _submit_next(self, parser: ThreadPoolExecutor, pending: Iterator[SourceFile]) -> Future | None:
        file = next(pending, None)
        return None if file is None else parser.submit(self._prepare, file)

    def _prepare(self, file: SourceFile) -> _Prepared | FileResult:
        """Read, hash, parse and chunk one file, writing nothing; a FileResult when it is done already."""
        started = time.perf_counter()
        max_bytes = int(self.settings.max_file_mb * 1_000_000)
        try:
            if not file.data and file.path is not None and not file.path.is_file():
                raise IngestError("no such file")
            if file.size() > max_bytes:
                raise IngestError(
                    f"too large: {file.size() / 1e6:.1f} MB, over the limit of {self.settings.max_file_mb:g} MB "
                    "(RAG_MAX_FILE_MB)"
                )
            data = file.read()
            content_sha256 = hashlib.sha256(data).hexdigest()
            doc_id = doc_id_for(file.name)
            existing = self.kb.document(doc_id)
            if existing and existing.content_sha256 == content_sha256:
                return FileResult(file.name, "skipped", existing.chunks, existing.pages, doc_id=doc_id,
                                  seconds=time.perf_counter() - started)
            pages = load_document(file.name, data, max_bytes=max_bytes)
            texts, pages_of_texts = self._chunk(pages)
        except IngestError as error:
            return FileResult(file.name, "failed", reason=str(error), seconds=time.perf_counter() - started)
        except OSError as error:
            return FileResult(file.name, "failed", reason=f"cannot read the file: {error.strerror or error}",
                              seconds=time.perf_counter() - started)
        return _Prepared(file.name, doc_id, content_sha256, len(data), len(pages), texts, pages_of_texts,
                         time.perf_counter() - started)

    def _chunk(self, pages: list[PageText]) -> tuple[list[str], list[int | None]]:
        texts: list[str] = []
        page_numbers: list[int | None] = []
        for page in pages:
            for text in self.splitter.split_text(page.text):
                if text.strip():
                    texts.append(text)
                    page_numbers.append(page.number)
        if not texts:
            raise IngestError("no text found in the file")
        return texts, page_numbers

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
            metadatas.append(meta)
        embeddings = self.embedder.embed_documents(doc.texts)
        chunk_ids = [f"{doc.doc_id}:{doc.content_sha256[:12]}:{i:05d}" for i in range(len(doc.texts))]
        record = DocumentRecord(doc_id=doc.doc_id, source=doc.source, content_sha256=doc.content_sha256,
                                pages=doc.pages, chunks=len(doc.texts), ingested_at=ingested_at, size_bytes=doc.size)
        self.kb.write_document(record, chunk_ids, doc.texts, embeddings, metadatas)
        return FileResult(doc.source, "ok", len(doc.texts), doc.pages, doc_id=doc.doc_id,
                          seconds=doc.seconds + time.perf_counter() - started)


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
