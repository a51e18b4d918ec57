"""The cited page of a PDF as an image, the quoted sentence marked on it (issue 24 §5).

Chroma holds a document's text, not its file; to show a page, ingest keeps each PDF's bytes beside the store
(:func:`keep_original`: ``<data dir>/originals/<collection>/<doc id>-<content sha256>.pdf``, once the document
is committed, the previous version of the document removed). A page is drawn by pdfium (``pypdfium2``) and the
quoted sentence found in the page's own text layer: both texts are compared as letters and digits only,
case-folded, since pypdf (which ingest reads with) and pdfium break lines, space words and join ligatures
differently. The marks are the
rectangles pdfium gives for the matched characters. A PDF kept on another replica's disk, a scan (no text
layer) or a sentence that cannot be found is said in words, never a wrong mark.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from rag.settings import Settings

ORIGINALS = "originals"
MARK_FILL = (255, 214, 0, 90)  # a highlighter's yellow, translucent so the text stays legible
MARK_EDGE = (230, 120, 0, 255)
_PREFIX = 80  # letters: when a whole sentence is not found (a chunk cut it, text differs), its start is tried
# A page is drawn at most this many pixels (an A4 page at the default scale is 1.3 M), whatever its size in
# points: a 14,400 pt square page at scale 1.6 would be 530 M pixels, 2 GB of RGBA, before the PNG is made.
MAX_PAGE_PIXELS = 6_000_000
MAX_PAGE_SIDE = 8_000  # pixels: a long, thin page (a receipt roll) is bounded by its length too


@dataclass
class PageImage:
    png: bytes
    width: int
    height: int
    marked: bool  # the quoted text was found on the page and boxed
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)  # pixels: left, top, right, bottom


def _folder(settings: Settings, collection: str) -> Path:
    return Path(settings.data_dir) / ORIGINALS / collection


def original_path(settings: Settings, collection: str, doc_id: str, content_sha256: str) -> Path:
    return _folder(settings, collection) / f"{doc_id}-{content_sha256[:16]}.pdf"


def keep_original(settings: Settings, collection: str, source: str, doc_id: str, content_sha256: str,
                  data: bytes) -> Path | None:
    """Keep a PDF's bytes for its page images (other files: nothing), once its document is committed (a file
    that fails keeps nothing). Written to a temporary file and renamed, so a reader never sees half a file; the
    older versions go with it (:func:`prune`), a crash's leftovers with the store's sweep (:func:`sweep_originals`)."""
    if not source.lower().endswith(".pdf"):
        return None
    target = original_path(settings, collection, doc_id, content_sha256)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            handle, temporary = tempfile.mkstemp(dir=target.parent, suffix=".part")
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.replace(temporary, target)
    except OSError:  # a full or read-only disk costs the page images, never the ingest
        return None
    return target


def prune(settings: Settings, collection: str, doc_id: str, keep: str | None = None) -> None:
    """Remove the kept PDFs of a document but the version ``keep`` (a content sha256; None: all of them)."""
    kept = original_path(settings, collection, doc_id, keep) if keep else None
    for path in _folder(settings, collection).glob(f"{doc_id}-*.pdf"):
        if path != kept:
            path.unlink(missing_ok=True)


def sweep_originals(settings: Settings, collection: str, committed: dict[str, str], grace_s: float = 0.0) -> int:
    """Remove the kept files of a collection that no committed version vouches for (``committed``: doc id ->
    content sha256), and half-written ones, older than ``grace_s`` seconds; returns how many. Ingest keeps a
    file only once its document is committed, so these are a crash's or an older release's leftovers."""
    import time

    removed, now = 0, time.time()
    for path in _folder(settings, collection).glob("*"):
        doc_id, _, version = path.stem.partition("-")
        if path.suffix == ".pdf" and committed.get(doc_id, "")[:16] == version and version:
            continue
        try:
            if now - path.stat().st_mtime >= grace_s:
                path.unlink()
                removed += 1
        except OSError:  # gone already (another sweep), or not ours to remove
            continue
    return removed


def drop_originals(settings: Settings, collection: str) -> None:
    """Remove every kept PDF of a collection (the collection is dropped)."""
    import shutil

    shutil.rmtree(_folder(settings, collection), ignore_errors=True)


def find_original(settings: Settings, collection: str, doc_id: str, content_sha256: str | None) -> Path | None:
    """The kept PDF of this version of the document, or None (not a PDF, ingested elsewhere or before)."""
    if not content_sha256:
        return None
    path = original_path(settings, collection, doc_id, content_sha256)
    return path if path.is_file() else None


def _letters(text: str) -> tuple[str, list[int]]:
    """``text``'s letters and digits, case-folded, and where each came from in ``text``."""
    out, where = [], []
    for i, ch in enumerate(text):
        if ch.isalnum():
            folded = ch.casefold()
            out.append(folded)
            where.extend([i] * len(folded))
    return "".join(out), where


def locate(page_text: str, quote: str) -> tuple[int, int] | None:
    """(first, last + 1) character indexes of ``quote`` in ``page_text``, compared as letters and digits only;
    when the whole quote is not there, its first ``_PREFIX`` letters. None when neither is found."""
    haystack, where = _letters(page_text)
    needle, _ = _letters(quote)
    if len(needle) < 8:  # too short to be told from any other place on the page
        return None
    found = haystack.find(needle)
    if found < 0 and len(needle) > _PREFIX:
        needle = needle[:_PREFIX]
        found = haystack.find(needle)
    if found < 0:
        return None
    return where[found], where[found + len(needle) - 1] + 1


def bounded_scale(width_pt: float, height_pt: float, scale: float) -> float:
    """``scale``, or less where the page drawn at it would be over ``MAX_PAGE_PIXELS`` or ``MAX_PAGE_SIDE``."""
    width_pt, height_pt = max(width_pt, 1.0), max(height_pt, 1.0)
    scale = min(scale, (MAX_PAGE_PIXELS / (width_pt * height_pt)) ** 0.5, MAX_PAGE_SIDE / max(width_pt, height_pt))
    while (math.ceil(width_pt * scale) * math.ceil(height_pt * scale) > MAX_PAGE_PIXELS
           or math.ceil(max(width_pt, height_pt) * scale) > MAX_PAGE_SIDE):
        scale *= 0.999  # pdfium rounds each side up to a whole pixel
    return scale


def render_page(path: str | Path, page_number: int, quotes: list[str] = (), *, scale: float = 1.6) -> PageImage:
    """Page ``page_number`` (1-based) of the PDF at ``path`` as a PNG, each of ``quotes`` found boxed; drawn at
    ``scale`` pixels per point, less for a page that would be over ``MAX_PAGE_PIXELS`` (:func:`bounded_scale`).
    Raises ``ValueError`` for a page the file does not have, ``OSError`` for a file pdfium cannot open or draw."""
    import pypdfium2 as pdfium
    from PIL import Image, ImageDraw

    try:
        pdf = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as error:
        raise OSError(f"pdfium cannot open {Path(path).name}: {error}") from error
    try:
        if not 1 <= page_number <= len(pdf):
            raise ValueError(f"{Path(path).name} has {len(pdf)} pages, not a page {page_number}")
        page = pdf[page_number - 1]
        width_pt, height_pt = page.get_size()
        scale = bounded_scale(width_pt, height_pt, scale)
        try:
            image = page.render(scale=scale).to_pil().convert("RGBA")
        except pdfium.PdfiumError as error:
            raise OSError(f"pdfium cannot draw page {page_number} of {Path(path).name}: {error}") from error
        boxes: list[tuple[float, float, float, float]] = []
        if quotes:
            text_page = page.get_textpage()
            page_text = text_page.get_text_range()
            for quote in quotes:
                span = locate(page_text, quote)
                if span is None:
                    continue
                for i in range(text_page.count_rects(span[0], span[1] - span[0])):
                    left, bottom, right, top = text_page.get_rect(i)
                    boxes.append((left * scale - 2, (height_pt - top) * scale - 2,
                                  right * scale + 2, (height_pt - bottom) * scale + 2))
        if boxes:
            overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
            draw = ImageDraw.Draw(overlay)
            for box in boxes:
                draw.rectangle(box, fill=MARK_FILL, outline=MARK_EDGE, width=2)
            image = Image.alpha_composite(image, overlay)
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG", optimize=True)
        return PageImage(buffer.getvalue(), image.width, image.height, bool(boxes), boxes)
    finally:
        pdf.close()
