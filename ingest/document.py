"""What every loader shares: the error a user reads, a page of text, how a file is to be read, and the limits
on what a file's bytes may expand to.

Memory stays bounded for every format, whatever a hostile file holds: the input is at most ``max_bytes``
(RAG_MAX_FILE_MB); a DOCX (a zip) may inflate to at most :func:`inflate_limit` bytes, and the text a DOCX or
PDF yields is capped like a text file's (:func:`text_limit`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

# A zip member may inflate to 20 times the largest file we accept: text XML deflates 5-15 fold, images
# barely, so no real document comes near it, while a zip bomb inflates a thousand fold. The fixed cap keeps
# the work bounded when RAG_MAX_FILE_MB is large (20 x 50 MB would be 1 GB of XML to parse).
INFLATE_RATIO = 20
MAX_INFLATED_BYTES = 200_000_000
DEFAULT_MAX_BYTES = 50_000_000  # the limits of a caller without max_bytes: RAG_MAX_FILE_MB's default

OcrMode = Literal["auto", "off", "force"]


class IngestError(Exception):
    """This file cannot be ingested; ``str(error)`` is the reason shown to the user."""


class IngestCancelled(IngestError):
    """The ingest was stopped (Ctrl-C, an API client that hung up) while this file was being read."""


@dataclass(frozen=True)
class PageText:
    number: int | None  # 1-based page of a PDF (or frame of a TIFF); None for formats without pages
    text: str
    ocr: bool = False  # the text was read by OCR from the page's image
    running: tuple[str, ...] = ()  # running headers, footers and page numbers left out of ``text``
    # headings the format marks as such (HTML <h1>-<h6>, DOCX heading styles): (offset in text, level, heading)
    headings: tuple[tuple[int, int, str], ...] = ()


@dataclass(frozen=True)
class Reading:
    """How a file is to be read: RAG_OCR, RAG_OCR_DPI, RAG_RUNNING_LINES and what OCR may spend on one file
    (RAG_OCR_MAX_PAGES, RAG_OCR_MAX_MEGAPIXELS, RAG_OCR_MAX_SECONDS; see :mod:`rag.settings`)."""

    ocr: OcrMode = "auto"
    ocr_dpi: int = 200
    running_lines: bool = True  # leave running headers/footers out of the text
    ocr_max_pages: int = 200
    ocr_max_megapixels: float = 1000.0
    ocr_max_seconds: float = 600.0
    # raises IngestCancelled once the ingest is stopped: asked while a page waits for OCR (not part of the key)
    stop: Callable[[], None] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, settings, stop: Callable[[], None] | None = None) -> Reading:
        return cls(ocr=settings.ocr, ocr_dpi=settings.ocr_dpi, running_lines=settings.strip_running_lines,
                   ocr_max_pages=settings.ocr_max_pages, ocr_max_megapixels=settings.ocr_max_megapixels,
                   ocr_max_seconds=settings.ocr_max_seconds, stop=stop)

    def key(self) -> str:
        """What changes the text a file yields: for the caches of chunked corpora (evaluation's index)."""
        return f"read:v1/ocr={self.ocr}@{self.ocr_dpi}/running={int(self.running_lines)}"


@dataclass
class ReadDocument:
    """A file as read: its pages with text, the pages that failed alone (number, reason), and how many
    distinct running lines were left out of how many pages."""

    pages: list[PageText]
    failed_pages: list[tuple[int | None, str]] = field(default_factory=list)
    running_lines: int = 0
    page_count: int = 0

    @property
    def ocr_pages(self) -> int:
        return sum(page.ocr for page in self.pages)


def inflate_limit(max_bytes: int | None) -> int:
    """How many bytes the XML of a zip-based document (DOCX) may inflate to, in all."""
    return min(MAX_INFLATED_BYTES, INFLATE_RATIO * (max_bytes or DEFAULT_MAX_BYTES))


def text_limit(max_bytes: int | None) -> int:
    """The characters of text one document may yield: as many as a text file of the largest size."""
    return max_bytes or DEFAULT_MAX_BYTES


def mb(n: int) -> str:
    return f"{n / 1e6:g} MB"


def text_too_long(limit: int, where: str = "") -> IngestError:
    return IngestError(f"its text runs over {limit:,} characters{where}, the most one document may hold (as much "
                       f"as a text file of {mb(limit)})")
