"""Indexing a BEIR corpus into a cached throwaway collection, the way evaluation and benchmarks search it.

One node per corpus document whose id is kept so qrels match (``title + "\\n" + text`` when titled);
``chunk=True`` splits long documents with ingest's own splitter and maps chunk hits back to their
document. A document kept as a file (corpus.jsonl ``"path"``, e.g. the SEC 10-Q PDFs) is read by ingest's
loaders and chunked page by page as ingest does, whatever ``chunk`` says: a whole PDF is no passage. The
collection name derives from (dataset path, corpus sha256, embedder, chunking, the files' sha256), so a
second run over the same corpus and embedder re-uses the vectors instead of re-embedding.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from evaluation.datasets import Document, RetrievalDataset, load_dataset
from evaluation.report import IndexInfo
from ingest.chunking import CHUNK_RECIPE, make_splitter
from rag.chunk_context import with_context
from rag.settings import Settings

INDEX_RECORD_ID = "eval-corpus"
INDEX_LAYOUT = "v2"  # bump when the node metadata changes, so cached indexes are rebuilt
Progress = Callable[[str], None]


class EvalError(RuntimeError):
    """The evaluation cannot run as asked; the message says why and what to do."""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-_")[:40] or "dataset"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dataset_label(path: Path) -> str:
    """``xquad/en`` for ``../shared/datasets/xquad/en``, ``squad11_dev`` for a top-level set."""
    parent = path.parent.name
    return f"{parent}/{path.name}" if parent and parent != "datasets" and (path.parent / "SOURCE.md").is_file() else path.name


def index_key(dataset_dir: Path, embedder: str, chunk: bool, settings: Settings,
              files: Sequence[Path] = (), titled: bool = True) -> str:
    """The cache key of a corpus index: (dataset path, corpus sha256, embedder, chunking, the documents' files)."""
    chunking = f"chunk:{settings.chunk_size}/{settings.chunk_overlap}/{CHUNK_RECIPE}" if chunk or files else "doc"
    if titled or files:  # the context line (a title, a file's identity) changes what is embedded
        chunking += f"/context:{settings.chunk_context}@{settings.chunk_context_chars}"
    if settings.embed_engine == "onnx-int8":  # its vectors are its own; "onnx" and "c" share theirs
        embedder += "@onnx-int8"
    parts = [INDEX_LAYOUT, str(dataset_dir.resolve()), _file_sha256(dataset_dir / "corpus.jsonl"), embedder, chunking,
             *(_file_sha256(path) for path in files)]
    if files:  # how files are read (OCR, running lines) changes their chunks
        from ingest.loaders import Reading

        parts.append(Reading.of(settings).key())
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def _pieces(doc: Document, splitter, settings: Settings | None = None) -> list[tuple[str, int | None, dict]]:
    """A corpus document's nodes: (text, page, the chunk's identity metadata). A file is read and chunked as ingest
    does (pages kept, identity and sections found: ingest.identity); a titled document's title is its context, as
    a file's identity is (the passage alone is what an answer quotes)."""
    if doc.path is not None:
        from ingest.chunking import chunk_pages
        from ingest.identity import situate_chunks
        from ingest.loaders import IngestError, Reading, load_document

        reading = Reading.of(settings) if settings is not None else None
        data = doc.path.read_bytes()
        try:
            pages = load_document(doc.path.name, data, reading=reading)
            texts, numbers, _ = chunk_pages(pages, splitter)
        except (IngestError, OSError) as exc:
            raise EvalError(f"corpus document {doc.id!r} ({doc.path}): {exc}") from exc
        situated = situate_chunks(settings or Settings(), doc.path.name, data, pages, texts, numbers)
        return list(zip(texts, numbers, situated or [{}] * len(texts), strict=True))
    off = settings is not None and settings.chunk_context == "off"
    body = f"{doc.title}\n{doc.text}" if doc.title and off else doc.text
    meta = {"doc_title": doc.title, "context": doc.title} if doc.title and not off else {}
    if splitter is None:
        return [(body, None, meta)]
    return [(p, None, meta) for p in splitter.split_text(body) if p.strip()]


def index_corpus(
    settings: Settings,
    dataset_dir: str | Path,
    dataset: RetrievalDataset | None = None,
    *,
    chunk: bool = False,
    rebuild: bool = False,
    progress: Progress | None = None,
) -> IndexInfo:
    """Index ``dataset_dir``'s corpus with ``settings.embed_model`` into a cached throwaway collection."""
    from rag.embedders.models import configured_embedder
    from rag.store import DocumentRecord, KnowledgeBase

    dataset_dir = Path(dataset_dir)
    dataset = dataset or load_dataset(dataset_dir)
    files = [doc.path for doc in dataset.corpus.values() if doc.path is not None]
    key = index_key(dataset_dir, settings.embed_model, chunk, settings, files,
                    titled=any(doc.title for doc in dataset.corpus.values()))
    name = f"eval-{_slug(dataset_label(dataset_dir))}-{key[:16]}"
    started = time.perf_counter()
    embedder = configured_embedder(settings)
    kb = KnowledgeBase(settings, name, embed_model=embedder.name)
    committed = kb.document(INDEX_RECORD_ID)
    if committed is not None and committed.content_sha256 == key and not rebuild:
        return IndexInfo(embedder=embedder.name, collection=name, nodes=committed.chunks, cached=True,
                         seconds=round(time.perf_counter() - started, 2))
    kb.drop()
    kb = KnowledgeBase(settings, name, embed_model=embedder.name)
    ids: list[str] = []
    texts: list[str] = []
    read: list[str] = []  # what the embedder reads: the context line, then the text (rag.chunk_context)
    metadatas: list[dict] = []
    splitter = make_splitter(settings, embedder) if chunk or files else None
    for doc in dataset.corpus.values():
        for n, (piece, page, identity) in enumerate(_pieces(doc, splitter, settings)):
            ids.append(doc.id if not splitter else f"{doc.id}#{n}")
            texts.append(piece)
            read.append(with_context(identity.get("context"), piece))
            # The whole corpus is one committed document of the store (so readers see all of it or
            # none); each node's corpus id rides in ``source``, which qrels are matched against.
            metadatas.append({"doc_id": INDEX_RECORD_ID, "source": doc.id, "content_sha256": key,
                              "chunk_index": n} | ({"page": page} if page is not None else {}) | identity)
    if not texts:
        raise EvalError(f"the corpus of {dataset_dir} is empty")
    vectors = []
    step = 512
    for start in range(0, len(texts), step):
        vectors.append(embedder.embed_documents(read[start:start + step]))
        if progress:
            progress(f"indexing {dataset_label(dataset_dir)} with {embedder.name}: "
                     f"{min(start + step, len(texts))}/{len(texts)} nodes")
    record = DocumentRecord(doc_id=INDEX_RECORD_ID, source=str(dataset_dir), content_sha256=key, pages=0,
                            chunks=len(texts), ingested_at=datetime.now(UTC).isoformat(timespec="seconds"),
                            size_bytes=sum(len(t.encode()) for t in texts))
    kb.write_document(record, ids, texts, np.concatenate(vectors), metadatas)
    return IndexInfo(embedder=embedder.name, collection=name, nodes=len(texts), cached=False,
                     seconds=round(time.perf_counter() - started, 2))
