"""PDF: each page's text layer (pypdf), or its image read by OCR (pypdfium2 renders it, :mod:`ingest.ocr` reads
it) where the page has no text layer; then the running headers and footers left out (:mod:`ingest.furniture`).
Lines set wholly in a bold face are marked as the page's headings (``PageText.headings``): in a PDF that numbers
no headings of its own (no outline, no "Item 2."), they are its sections (:mod:`ingest.identity`).

RAG_OCR: ``auto`` reads by OCR the pages with almost no text (fewer than ``MIN_TEXT_CHARS``) that hold an image,
so a PDF with text layers (every page of the SEC 10-Qs) never renders a page; ``force`` reads every page by
OCR (a scan whose text layer is bad); ``off`` never does. A page OCR cannot read fails alone, with its reason;
so do the scanned pages left once the file's OCR budget (pages, pixels, seconds: :class:`ingest.ocr.OcrBudget`)
is spent.

PDF streams are bounded by pypdf's own limits (75 MB per stream, 2 M operations per content stream), their
inflated content in all by ``INFLATE_RATIO`` x the file size limit, and the text by the text limit.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from itertools import accumulate

from ingest.document import (
    DEFAULT_MAX_BYTES,
    INFLATE_RATIO,
    IngestError,
    PageText,
    Reading,
    ReadDocument,
    mb,
    text_limit,
    text_too_long,
)
from ingest.furniture import strip_running_lines

MIN_TEXT_CHARS = 25  # fewer non-space characters than this: a scan with at most a stamped page number
MAX_RENDER_PIXELS = 40_000_000  # a page rendered for OCR is scaled down to this (a poster-sized page)
PageProgress = Callable[[int, int, str], None]  # (done, total, step)
EMPHASIS_LEVEL = 1  # a bold line's heading level: one level, each bold heading follows the last
MAX_HEADING_CHARS = 100  # a longer bold line is an emphasised sentence, not a heading
TABLE_HEADER_LINES = 3  # short bold lines in one block: a table's column heads
MAX_BOLD_SHARE = 0.5  # a page with more of its long lines in bold sets its text in bold: none is a heading
PROSE_CHARS = 50  # a line this long is running text or a table row, not a heading
_DATE = re.compile(r"[A-Za-z]+\.? \d{1,2},? \d{4}|\d{4}")
_BOLD_FONT = re.compile(r"bold|black|heavy|semibold|demi", re.IGNORECASE)


def _bold(font) -> bool:  # noqa: ANN001 - a pypdf font dictionary or None
    try:
        return bool(font) and bool(_BOLD_FONT.search(str(font.get("/BaseFont", ""))))
    except Exception:  # noqa: BLE001 - a font dictionary is a help, never a reason to fail
        return False


def bold_headings(text: str, bold: set[str]) -> tuple[tuple[int, int, str], ...]:
    """The lines of a page's ``text`` that its text layer sets wholly in bold (``bold``: its bold runs, spaces
    collapsed), as ``PageText.headings``: short ones that hold a word. Not a heading: a line that ends mid-phrase
    or as a sentence, one that starts lower-case (a wrapped line), a qualifier ("(in millions)"), a date ("June
    25, 2022"), the short lines of a block of bold lines that holds ``TABLE_HEADER_LINES`` or more of them (a
    table's column heads: "Fair", "Value", "Cost"), and every line of a page whose long lines are mostly bold (its running text set in bold)."""
    lines = text.splitlines(keepends=True)
    offsets = [0, *accumulate(len(line) for line in lines)]
    words = [" ".join(line.split()) for line in lines]
    prose = [line for line in words if len(line) >= PROSE_CHARS]
    if prose and sum(line in bold for line in prose) > MAX_BOLD_SHARE * len(prose):
        return ()  # a page whose running text is bold emphasises nothing (a paragraph's first line is no heading)
    blocks: list[list[int]] = []  # runs of consecutive bold lines, by line index
    for i, line in enumerate(words):
        if line not in bold:
            continue
        if blocks and blocks[-1][-1] == i - 1:
            blocks[-1].append(i)
        else:
            blocks.append([i])
    headings = []
    for block in blocks:
        crowded = sum(len(words[i].split()) <= 2 for i in block) >= TABLE_HEADER_LINES
        for i in block:
            line = words[i]
            if (3 <= len(line) <= MAX_HEADING_CHARS and re.search(r"[^\W\d_]{2}", line)
                    and not line.endswith((",", ";", ":", ".")) and not line.startswith("(")
                    and not next(ch for ch in line if ch.isalpha()).islower()
                    and not _DATE.fullmatch(line) and not (crowded and len(line.split()) <= 2)):
                headings.append((offsets[i] + len(lines[i]) - len(lines[i].lstrip()), EMPHASIS_LEVEL, line))
    return tuple(headings)


def _content_streams(page) -> list:
    """The content streams of a PDF page (its /Contents: one stream or an array of them)."""
    from pypdf.generic import ArrayObject, StreamObject

    contents = page.get("/Contents")
    contents = None if contents is None else contents.get_object()
    parts = list(contents) if isinstance(contents, ArrayObject) else [contents]
    streams = [part.get_object() for part in parts if part is not None]
    return [stream for stream in streams if isinstance(stream, StreamObject)]


def _has_image(resources, depth: int = 0) -> bool:
    """Whether a page's resources hold an image XObject, directly or in a form (a scan is one image per page,
    sometimes wrapped in a form). Read from the dictionaries, no image decoded."""
    try:
        xobjects = resources.get_object().get("/XObject") if resources is not None else None
        for ref in (xobjects.get_object().values() if xobjects is not None else []):
            xobject = ref.get_object()
            subtype = xobject.get("/Subtype")
            if subtype == "/Image" or (subtype == "/Form" and depth < 3
                                       and _has_image(xobject.get("/Resources"), depth + 1)):
                return True
    except (AttributeError, KeyError, TypeError, ValueError):
        return False
    return False


class _Renderer:
    """Pages of one PDF as images, for OCR: pypdfium2 (PDFium), opened on the first page that needs it."""

    def __init__(self, data: bytes, dpi: int) -> None:
        self._data, self._dpi, self._pdf = data, dpi, None

    def image(self, number: int):
        import pypdfium2 as pdfium

        if self._pdf is None:
            self._pdf = pdfium.PdfDocument(self._data)
        page = self._pdf[number - 1]
        width, height = page.get_size()  # points
        scale = self._dpi / 72
        scale = min(scale, (MAX_RENDER_PIXELS / max(width * height, 1.0)) ** 0.5)
        try:
            return page.render(scale=scale).to_pil()
        finally:
            page.close()

    def close(self) -> None:
        if self._pdf is not None:
            self._pdf.close()


def _ocr_page(renderer: _Renderer, number: int, budget) -> str:
    """Page ``number`` rendered and read by OCR, charged to the file's ``budget`` (:class:`ingest.ocr.OcrBudget`)."""
    from ingest.ocr import PageUnreadable

    def render():
        try:
            return renderer.image(number)
        except Exception as error:  # noqa: BLE001 - PDFium raises its own PdfiumError and others on broken pages
            raise PageUnreadable(f"it cannot be rendered for OCR ({error})") from error

    return budget.read(render)


def load_pdf(data: bytes, max_bytes: int | None = None, on_page: PageProgress | None = None,
             reading: Reading | None = None) -> ReadDocument:
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, LimitReachedError, PyPdfError

    from ingest.ocr import OcrBudget, OcrLimit, PageUnreadable

    reading = reading or Reading()
    budget = OcrBudget(reading)
    unread: list[tuple[int, str]] = []  # the scanned pages left once the file's OCR budget was spent, and why
    # pypdf bounds each stream (75 MB) but keeps every stream it decoded: each page's content streams are let
    # go once read (memory), and all of them together may inflate to 20x the file size limit (work). No fixed
    # cap here, unlike DOCX: text PDFs' content inflates up to ~10 fold, and is never held all at once.
    limit = text_limit(max_bytes)
    content_limit = INFLATE_RATIO * (max_bytes or DEFAULT_MAX_BYTES)
    renderer = _Renderer(data, reading.ocr_dpi)
    failed: list[tuple[int | None, str]] = []
    bold: dict[int, set[str]] = {}  # each page's runs of bold text, to find its headings once the text is final

    def page_texts(pages) -> Iterator[PageText]:
        total = content = 0
        for number, page in enumerate(pages, 1):
            streams = _content_streams(page)
            data_of = [stream.get_data() for stream in streams]
            content += sum(len(part) for part in data_of)
            if content > content_limit:
                raise IngestError(f"its pages' content inflates to more than {mb(content_limit)} by page {number}: "
                                  f"refused as a likely decompression bomb (the limit is {INFLATE_RATIO}x "
                                  "RAG_MAX_FILE_MB)")
            runs = bold[number] = set()

            def visit(text, cm, tm, font, size):  # noqa: ANN001 - pypdf's visitor signature
                if _bold(font) and text.strip():
                    runs.add(" ".join(text.split()))

            text = "" if reading.ocr == "force" else (page.extract_text(visitor_text=visit) or "").strip()
            ocr = reading.ocr == "force" or (
                reading.ocr == "auto" and len("".join(text.split())) < MIN_TEXT_CHARS
                and (_has_image(page.get("/Resources")) or any(b"BI" in part and b"EI" in part for part in data_of)))
            del data_of
            for stream in streams:
                if getattr(stream, "decoded_self", None) is not None:
                    stream.decoded_self = None
            if ocr:
                runs.clear()  # the text is the image's now; a text layer's bold runs mark none of it
                try:
                    text = _ocr_page(renderer, number, budget)
                except OcrLimit as error:
                    unread.append((number, str(error)))
                    text, ocr = "", False
                except PageUnreadable as error:
                    failed.append((number, str(error)))
                    text, ocr = "", False
            total += len(text)
            if on_page:
                on_page(number, len(pages), "pages read by OCR" if ocr else "pages read")
            if total > limit:
                raise text_too_long(limit, f" by page {number}")
            yield PageText(number, text, ocr=ocr)

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
        pages = list(page_texts(reader.pages))
        if unread:  # one note for them all
            more = f", nor the {len(unread) - 1:,} scanned pages after it" if len(unread) > 1 else ""
            failed.append((unread[0][0], f"not read{more}: {unread[0][1]}"))
    except IngestError:
        raise
    except FileNotDecryptedError as error:
        raise IngestError("encrypted PDF: it needs a password; save an unprotected copy and ingest that") from error
    except LimitReachedError as error:  # pypdf's guards against decompression bombs and runaway structures
        raise IngestError(f"the PDF goes past a safety limit of the PDF reader: {error}") from error
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError,
            RecursionError) as error:
        raise IngestError(f"not a readable PDF (corrupt or truncated): {error}") from error
    finally:
        renderer.close()
    if not pages:
        raise IngestError("the PDF has no pages")
    texted = [page for page in pages if page.text]
    if not texted:
        raise IngestError(_nothing_read(len(pages), failed, reading))
    running = 0
    if reading.running_lines:
        texted, running = strip_running_lines(texted)
        texted = [page for page in texted if page.text]
    texted = [replace(page, headings=bold_headings(page.text, bold.get(page.number, set()))) for page in texted]
    return ReadDocument(texted, failed, running, len(pages))


def _nothing_read(pages: int, failed: list[tuple[int | None, str]], reading: Reading) -> str:
    if failed:
        return (f"OCR could read none of its {pages} pages (page {failed[0][0]}: {failed[0][1]})"
                if pages > 1 else f"OCR could not read its page: {failed[0][1]}")
    if reading.ocr == "off":
        return (f"no text layer in any of its {pages} pages (a scanned or image-only PDF?), and OCR is off "
                "(RAG_OCR=off): set RAG_OCR=auto to read it")
    return f"no text layer in any of its {pages} pages, and no image on them to read by OCR: the pages are blank"
