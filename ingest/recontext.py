"""Context lines for a collection ingested before chunks knew their document (``rerank-rag reindex --context``).

Nothing is chunked again: every chunk keeps its id and text, and gets its ``doc_title``, ``section`` and
``context`` (:mod:`ingest.identity`) and a vector of its context line with its text. Where the identity comes from:

* a PDF whose original is kept beside the store (:mod:`rag.page_image`): the file itself, as ingest reads it
  (metadata, cover, running lines, outline, numbered or bold headings);
* Markdown and plain text: the stored chunks themselves, which hold the file's text and its ``#`` headings;
* anything else (HTML, DOCX, a PDF ingested before originals were kept, images): the stored text and the file
  name only, and the document is named as one to ingest again for the title and sections the file holds.

Each document is written back in one upsert of its chunks (same ids, so a kill half-way leaves each chunk
either old or new, both readable), and the derived indexes (BM25, the exact dense matrix) are rebuilt after.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePath

from ingest.document import PageText
from ingest.identity import chunk_metadata, chunk_sections, document_context
from ingest.loaders import IngestError, Reading, read_document
from rag.chunk_context import with_context
from rag.page_image import find_original
from rag.store import KnowledgeBase, writing

_FROM_TEXT = (".md", ".markdown", ".txt", ".text")


@dataclass
class RecontextReport:
    documents: int = 0
    chunks: int = 0
    # (source, why): documents whose context came from their stored text and name alone
    ingest_again: list[tuple[str, str]] = field(default_factory=list)


def _stored_pages(texts: list[str], pages: list[int | None]) -> list[PageText]:
    """The pages as their chunks hold them: each page's chunks joined in order (overlaps repeat a little)."""
    joined: dict[int | None, list[str]] = {}
    for text, page in zip(texts, pages, strict=True):
        joined.setdefault(page, []).append(text)
    return [PageText(number, "\n".join(parts)) for number, parts in joined.items()]


def recontext(kb: KnowledgeBase, embed: Callable[[list[str]], list], *,
              progress: Callable[[str], None] | None = None) -> RecontextReport:
    """Write every committed chunk of ``kb`` again with its document's context, embedded by ``embed``."""
    settings = kb.settings
    report = RecontextReport()
    for record in kb.documents():
        rows = kb.chunks.get(where={"$and": [{"doc_id": record.doc_id}, {"content_sha256": record.content_sha256}]},
                             include=["documents", "metadatas"])
        order = sorted(range(len(rows["ids"])), key=lambda i: int(rows["metadatas"][i].get("chunk_index", i)))
        ids = [rows["ids"][i] for i in order]
        texts = [rows["documents"][i] or "" for i in order]
        metas = [dict(rows["metadatas"][i]) for i in order]
        numbers = [meta.get("page") for meta in metas]
        if not ids:
            continue
        suffix = PurePath(record.source).suffix.lower()
        original = find_original(settings, kb.name, record.doc_id, record.content_sha256)
        data, pages = None, _stored_pages(texts, numbers)
        if original is not None:
            try:
                data = original.read_bytes()
                pages = read_document(record.source, data, reading=Reading.of(settings)).pages
            except (IngestError, OSError):
                data, pages = None, _stored_pages(texts, numbers)
        if data is None and suffix not in _FROM_TEXT:
            why = "its original is not kept" if suffix == ".pdf" else "the stored text holds none of its headings"
            report.ingest_again.append((record.source, f"context from its name and text only ({why})"))
        if settings.chunk_context == "off":
            situated = [{} for _ in ids]
        else:
            context = document_context(record.source, data, pages)
            situated = chunk_metadata(context, chunk_sections(context, pages, texts, numbers),
                                      settings.chunk_context_chars)
        for meta, new in zip(metas, situated, strict=True):
            for key in ("doc_title", "section", "context"):
                meta.pop(key, None)
            meta.update(new)
        vectors = embed([with_context(meta.get("context"), text) for meta, text in zip(metas, texts, strict=True)])
        batch = kb.client.get_max_batch_size()
        with writing(settings):
            for start in range(0, len(ids), batch):
                end = start + batch
                kb.chunks.upsert(ids=ids[start:end], documents=texts[start:end], metadatas=metas[start:end],
                                 embeddings=[list(map(float, vector)) for vector in vectors[start:end]])
        report.documents += 1
        report.chunks += len(ids)
        if progress:
            progress(f"{record.source}: {len(ids)} chunks")
    with writing(settings):
        kb._bump_generation()  # readers holding an index of this collection look again
    return report
