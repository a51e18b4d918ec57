"""Bytes of one file → its text, page by page, or an :class:`IngestError` with a reason a user can act on.

Loaders take bytes, not paths, so a browser upload and a file on disk take the same road.

>>> [page.number for page in load_document("report.pdf", pdf_bytes)]
[1, 2, 3]

One module per kind of file: :mod:`ingest.pdf` (text layers, OCR of scanned pages, running headers and
footers), :mod:`ingest.ocr` (images), :mod:`ingest.docx`, :mod:`ingest.text_formats` (text, Markdown, HTML);
what they share (the error, a page, the limits on what bytes may expand to) is in :mod:`ingest.document`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePath

from ingest.docx import MAX_ZIP_MEMBERS, load_docx
from ingest.document import (
    INFLATE_RATIO,
    MAX_INFLATED_BYTES,
    IngestError,
    PageText,
    Reading,
    ReadDocument,
    inflate_limit,
)
from ingest.names import safe_source_name
from ingest.ocr import IMAGE_SUFFIXES, load_image
from ingest.pdf import load_pdf
from ingest.text_formats import load_html, load_text

__all__ = ["INFLATE_RATIO", "MAX_INFLATED_BYTES", "MAX_ZIP_MEMBERS", "SUPPORTED_SUFFIXES", "IngestError", "PageText",
           "ReadDocument", "Reading", "inflate_limit", "load_document", "read_document", "safe_source_name"]

# Each loader of a format without pages: (bytes, max_bytes) -> pages; max_bytes sizes the limits on what the
# bytes may expand to. PDFs and images are read by read_document itself (progress, OCR, pages that fail alone).
LOADERS: dict[str, Callable[[bytes, int | None], list[PageText]]] = {
    ".txt": load_text,
    ".text": load_text,
    ".md": load_text,
    ".markdown": load_text,
    ".html": load_html,
    ".htm": load_html,
    ".docx": load_docx,
}
SUPPORTED_SUFFIXES = tuple(sorted([*LOADERS, ".pdf", *IMAGE_SUFFIXES]))


def read_document(name: str, data: bytes, *, max_bytes: int | None = None,
                  on_page: Callable[[int, int, str], None] | None = None,
                  reading: Reading | None = None) -> ReadDocument:
    """The file ``name`` whose content is ``data``, read: its non-empty pages, the pages that failed alone and
    why, the running lines left out. ``max_bytes`` (RAG_MAX_FILE_MB) bounds the file and what it may expand to
    (see :func:`inflate_limit`); ``reading`` says how (OCR, running lines: :meth:`Reading.of` the settings).
    ``on_page(done, total, step)`` follows a PDF's pages and an image's frames as they are read (a 1,500-page
    PDF takes minutes, a 50-page scan by OCR too)."""
    suffix = PurePath(name).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise IngestError(
            f"unsupported file type '{suffix or '(none)'}': use one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if max_bytes is not None and len(data) > max_bytes:
        raise IngestError(f"too large: {len(data) / 1e6:.1f} MB, over the limit of {max_bytes / 1e6:g} MB")
    if not data.strip():
        raise IngestError("empty file")
    reading = reading or Reading()
    if suffix == ".pdf":
        read = load_pdf(data, max_bytes, on_page, reading)
    elif suffix in IMAGE_SUFFIXES:
        if reading.ocr == "off":
            raise IngestError("an image is read by OCR, and OCR is off (RAG_OCR=off): set RAG_OCR=auto to read it")
        read = load_image(data, max_bytes, (lambda done, total: on_page(done, total, "pages read by OCR"))
                          if on_page else None, reading)
    else:
        pages = LOADERS[suffix](data, max_bytes)
        read = ReadDocument(pages, page_count=len(pages))
    read.pages = [page for page in read.pages if page.text]
    if not read.pages:
        raise IngestError("no text found in the file")
    return read


def load_document(name: str, data: bytes, *, max_bytes: int | None = None,
                  on_page: Callable[[int, int, str], None] | None = None,
                  reading: Reading | None = None) -> list[PageText]:
    """The non-empty pages of the file ``name`` (see :func:`read_document`)."""
    return read_document(name, data, max_bytes=max_bytes, on_page=on_page, reading=reading).pages
