"""OCR: the text of a page image, offline, by RapidOCR (PP-OCRv4 detection, direction and recognition models for
Chinese and English as ONNX files inside the ``rapidocr-onnxruntime`` wheel, run on ONNX Runtime).

Chosen over Debian's tesseract (BENCHMARKS.md, "Documents: OCR, running lines, tables"): one model reads both
scripts, it installs from PyPI with nothing from apt, and it reads mixed English/Chinese pages.

>>> read_image(Image.open("scan.png")).text
'Kestrel Cycles - Returns and Service Guide ...'

Also the loader of image files (PNG, JPEG, TIFF: each TIFF frame a page): :func:`load_image`.
"""

from __future__ import annotations

import io
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ingest.document import IngestError, PageText, Reading, ReadDocument, text_limit, text_too_long

MIN_CONFIDENCE = 0.5  # a box read with less (RapidOCR's own text_score default) is noise: a smudge, a stamp
MAX_IMAGE_PIXELS = 100_000_000  # a 10,000 x 10,000 scan; a larger image is a decompression bomb, not a page
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")

_engine = None
_engine_lock = threading.Lock()  # one load; and ONNX Runtime sessions run one page at a time here
_CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")


class PageUnreadable(Exception):
    """OCR read nothing on this page: ``str(error)`` says why (the page fails, not its file)."""


class OcrLimit(Exception):
    """The file's OCR budget is spent: ``str(error)`` says which limit (its remaining scanned pages go unread)."""


class OcrBudget:
    """What OCR may spend on one file: pages, pixels and seconds (RAG_OCR_MAX_PAGES, RAG_OCR_MAX_MEGAPIXELS,
    RAG_OCR_MAX_SECONDS), so that a 1,000-frame TIFF or 200 blank scanned pages end in minutes, not hours."""

    def __init__(self, reading: Reading) -> None:
        self.reading = reading
        self.pages = self.pixels = 0
        self.seconds = 0.0

    def _refusal(self, pixels: int) -> str | None:
        r = self.reading
        if self.pages >= r.ocr_max_pages:
            return f"OCR reads at most {r.ocr_max_pages:,} pages of one file (RAG_OCR_MAX_PAGES)"
        if self.pixels + pixels > r.ocr_max_megapixels * 1e6:
            return f"OCR reads at most {r.ocr_max_megapixels:,g} million pixels of one file (RAG_OCR_MAX_MEGAPIXELS)"
        if self.seconds >= r.ocr_max_seconds:
            return f"OCR spends at most {r.ocr_max_seconds:,g} s on one file (RAG_OCR_MAX_SECONDS)"
        return None

    def read(self, image_of: Callable[[], object]) -> str:
        """The text OCR reads on the image ``image_of()`` draws (a PDF page rendered, a frame), charged to this
        file; :class:`OcrLimit` when the file has no budget left for it, :class:`PageUnreadable` as ``read_image``."""
        if (why := self._refusal(0)) is not None:
            raise OcrLimit(why)
        if self.reading.stop:
            self.reading.stop()
        started = time.monotonic()
        try:
            image = image_of()
            pixels = image.width * image.height
            if (why := self._refusal(pixels)) is not None:
                raise OcrLimit(why)
            self.pages += 1
            self.pixels += pixels
            return read_image(image, self.reading.stop).text
        finally:
            self.seconds += time.monotonic() - started


@dataclass(frozen=True)
class OcrText:
    text: str  # lines top to bottom, the boxes of a line left to right
    confidence: float  # the mean of the kept boxes' recognition scores
    boxes: int


def _load_engine():
    global _engine
    if _engine is not None:  # loaded: no need to wait for the lock another ingest's page holds
        return _engine
    with _engine_lock:
        if _engine is None:
            try:
                from rapidocr_onnxruntime import RapidOCR
            except ImportError as error:  # rapidocr or its OpenCV is missing: the install is broken, say how to fix
                raise IngestError(f"OCR is not installed ({error}): run `make setup`, or pip install "
                                  "opencv-python-headless and then rapidocr-onnxruntime --no-deps") from error
            _engine = RapidOCR(print_verbose=False)
    return _engine


def _join(left: str, right: str) -> str:
    """Two boxes of one line: CJK text runs on without a space; anything else gets one."""
    return left + right if _CJK.match(right[:1]) and _CJK.match(left[-1:]) else f"{left} {right}"


def lines_of(boxes: list) -> list[str]:
    """RapidOCR's boxes ([corner points, text, score]) as lines of text: boxes whose vertical spans overlap by
    half the smaller height are one line (a table row's cells, a sentence the detector cut), ordered left to
    right; lines top to bottom. Hand-written: RapidOCR returns boxes, not lines."""
    placed = []
    for points, text, _score in boxes:
        ys = [p[1] for p in points]
        placed.append((min(ys), max(ys), min(p[0] for p in points), text.strip()))
    placed.sort(key=lambda b: (b[0] + b[1]) / 2)
    lines: list[list[tuple]] = []
    for box in placed:
        top, bottom = box[0], box[1]
        if lines:
            last = lines[-1]
            l_top, l_bottom = min(b[0] for b in last), max(b[1] for b in last)
            overlap = min(bottom, l_bottom) - max(top, l_top)
            if overlap >= 0.5 * min(bottom - top, l_bottom - l_top):
                last.append(box)
                continue
        lines.append([box])
    out = []
    for line in lines:
        texts = [b[3] for b in sorted(line, key=lambda b: b[2]) if b[3]]
        if texts:
            joined = texts[0]
            for text in texts[1:]:
                joined = _join(joined, text)
            out.append(joined)
    return out


def _engine_turn(stop: Callable[[], None] | None) -> None:
    """Take the engine's lock; while another ingest's page holds it, ``stop()`` is asked every quarter second,
    so that a cancelled ingest does not wait for the engine to read nothing for it."""
    while not _engine_lock.acquire(timeout=0.25 if stop else -1):
        stop()
    if stop:
        try:
            stop()
        except BaseException:
            _engine_lock.release()
            raise


def read_image(image, stop: Callable[[], None] | None = None) -> OcrText:
    """The text OCR reads on ``image`` (a PIL image); :class:`PageUnreadable` when it finds none. ``stop``:
    raises when the ingest was stopped meanwhile (see :func:`_engine_turn`)."""
    import numpy as np

    engine = _load_engine()
    pixels = np.asarray(image.convert("RGB"))
    _engine_turn(stop)
    try:
        boxes, _ = engine(pixels)
    except Exception as error:  # noqa: BLE001 - OpenCV and ONNX Runtime raise their own kinds on odd images
        raise PageUnreadable(f"OCR failed on its image ({type(error).__name__}: {error})") from error
    finally:
        _engine_lock.release()
    kept = [box for box in boxes or [] if box[2] >= MIN_CONFIDENCE and str(box[1]).strip()]
    if not kept:
        raise PageUnreadable("OCR found no text it could read with confidence" if boxes else "OCR found no text on it")
    return OcrText("\n".join(lines_of(kept)), sum(box[2] for box in kept) / len(kept), len(kept))


def _check_frames(image) -> int:
    """How many frames ``image`` has, each one's size checked from its header before any is decoded: a frame
    over ``MAX_IMAGE_PIXELS`` (a TIFF's second frame of 15,000 px square) refuses the file."""
    frames = getattr(image, "n_frames", 1)
    for frame in range(frames):
        image.seek(frame)  # reads the frame's header (a TIFF's IFD), not its pixels
        if image.width * image.height > MAX_IMAGE_PIXELS:
            which = f"frame {frame + 1} of {frames} is " if frames > 1 else ""
            raise IngestError(f"{which}an image of {image.width:,} x {image.height:,} pixels, over the "
                              f"{MAX_IMAGE_PIXELS:,} a scanned page may have: refused as a likely decompression bomb")
    return frames


def load_image(data: bytes, max_bytes: int | None = None, on_page=None,
               reading: Reading | None = None) -> ReadDocument:
    """An image file read by OCR: a page per frame (a multi-page TIFF, a fax); a frame OCR cannot read fails
    alone, and so do the frames left when the file's OCR budget is spent (:class:`OcrBudget`). Pages are
    numbered only when there is more than one."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        frames = _check_frames(image)
    except (UnidentifiedImageError, OSError, ValueError, EOFError, Image.DecompressionBombError) as error:
        raise IngestError(f"not a readable image (corrupt, or another format renamed): {error}") from error
    pages: list[PageText] = []
    failed: list[tuple[int | None, str]] = []
    limit, total = text_limit(max_bytes), 0
    budget = OcrBudget(reading or Reading())
    for frame in range(frames):
        number = frame + 1 if frames > 1 else None
        try:
            image.seek(frame)
            text = budget.read(lambda: image)
        except OcrLimit as error:
            failed.append((number, f"not read, nor the {frames - frame - 1:,} frames after it: {error}"
                           if frame + 1 < frames else f"not read: {error}"))
            break
        except PageUnreadable as error:
            failed.append((number, str(error)))
            continue
        except (OSError, ValueError, EOFError, Image.DecompressionBombError) as error:  # a truncated frame
            failed.append((number, f"its image cannot be decoded ({error})"))
            continue
        finally:
            if on_page:
                on_page(frame + 1, frames)  # may raise IngestCancelled: the ingest was stopped
        total += len(text)
        if total > limit:
            raise text_too_long(limit, f" by frame {frame + 1}")
        pages.append(PageText(number, text, ocr=True))
    if not pages:
        reason = failed[0][1] if len(failed) == 1 else f"no frame of {frames} could be read: {failed[0][1]}"
        raise IngestError(reason)
    return ReadDocument(pages, failed, page_count=frames)
