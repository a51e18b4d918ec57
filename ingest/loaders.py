"""Bytes of one file → its text, page by page, or an :class:`IngestError` with a reason a user can act on.

Loaders take bytes, not paths, so a browser upload and a file on disk take the same road.

>>> [page.number for page in load_document("report.pdf", pdf_bytes)]
[1, 2, 3]
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath


class IngestError(Exception):
    """This file cannot be ingested; ``str(error)`` is the reason shown to the user."""


@dataclass(frozen=True)
class PageText:
    number: int | None  # 1-based page of a PDF; None for formats without pages
    text: str


def _load_pdf(data: bytes) -> list[PageText]:
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            # Many PDFs carry only an owner password (print/copy limits) and open with an empty one.
            try:
                opened = reader.decrypt("")
            except Exception as error:  # noqa: BLE001 - unsupported algorithms raise various errors
                raise IngestError(f"encrypted PDF that cannot be opened ({error})") from error
            if not opened:
                raise IngestError("encrypted PDF: it needs a password; save an unprotected copy and ingest that")
        pages = [PageText(number, (page.extract_text() or "").strip()) for number, page in enumerate(reader.pages, 1)]
    except IngestError:
        raise
    except FileNotDecryptedError as error:
        raise IngestError("encrypted PDF: it needs a password; save an unprotected copy and ingest that") from error
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError) as error:
        raise IngestError(f"not a readable PDF (corrupt or truncated): {error}") from error
    if not pages:
        raise IngestError("the PDF has no pages")
    texted = [page for page in pages if page.text]
    if not texted:
        raise IngestError(
            f"no text layer in any of its {len(pages)} pages (a scanned or image-only PDF?): run OCR on it first"
        )
    return texted


def _decode_text(data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise IngestError("binary data, not text (it contains NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Not UTF-8: the usual other encoding of Western text files is Windows-1252 / Latin-1.
        text = data.decode("cp1252", errors="replace")
    controls = sum(1 for ch in text if ord(ch) < 32 and ch not in "\n\r\t\f")
    if controls > max(8, len(text) // 100):
        raise IngestError("binary data, not text (neither UTF-8 nor Latin-1)")
    return text


def _load_text(data: bytes) -> list[PageText]:
    return [PageText(None, _decode_text(data).strip())]


_HTML_BLOCKS = ["p", "div", "li", "tr", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote",
                "section", "article", "header", "footer", "dd", "dt", "title", "caption"]


_BREAK = "\u2029"  # paragraph separator: marks block ends while source newlines collapse to spaces


def _load_html(data: bytes) -> list[PageText]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(_decode_text(data), "html.parser")
    for invisible in soup(["script", "style", "noscript", "template", "head", "svg"]):
        invisible.decompose()
    # Line breaks after block elements only, so inline markup (<b>, <a>) stays inside its sentence.
    for block in soup(_HTML_BLOCKS):
        block.append(_BREAK)
    for line_break in soup("br"):
        line_break.replace_with(_BREAK)
    lines = (" ".join(line.split()) for line in soup.get_text().split(_BREAK))
    return [PageText(None, "\n".join(line for line in lines if line))]


def _load_docx(data: bytes) -> list[PageText]:
    import zipfile

    import docx

    try:
        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as error:
        raise IngestError(f"not a readable DOCX (corrupt, or another format renamed): {error}") from error
    blocks = [paragraph.text for paragraph in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            blocks.append(" | ".join(cell.text.strip() for cell in row.cells))
    return [PageText(None, "\n".join(block for block in blocks if block.strip()))]


LOADERS: dict[str, Callable[[bytes], list[PageText]]] = {
    ".pdf": _load_pdf,
    ".txt": _load_text,
    ".text": _load_text,
    ".md": _load_text,
    ".markdown": _load_text,
    ".html": _load_html,
    ".htm": _load_html,
    ".docx": _load_docx,
}
SUPPORTED_SUFFIXES = tuple(sorted(LOADERS))


def load_document(name: str, data: bytes, *, max_bytes: int | None = None) -> list[PageText]:
    """The non-empty pages of the file ``name`` whose content is ``data``."""
    suffix = PurePath(name).suffix.lower()
    loader = LOADERS.get(suffix)
    if loader is None:
        raise IngestError(
            f"unsupported file type '{suffix or '(none)'}': use one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if max_bytes is not None and len(data) > max_bytes:
        raise IngestError(f"too large: {len(data) / 1e6:.1f} MB, over the limit of {max_bytes / 1e6:g} MB")
    if not data.strip():
        raise IngestError("empty file")
    pages = [page for page in loader(data) if page.text]
    if not pages:
        raise IngestError("no text found in the file")
    return pages
