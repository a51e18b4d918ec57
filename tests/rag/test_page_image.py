"""The cited page as an image (issue 24 §5): a PDF ingested is kept beside the store, its page drawn by
pdfium, the quoted sentence found in the page's text layer and boxed; a newer version or a delete removes
the kept file."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.page_image import find_original, keep_original, locate, original_path, prune, render_page
from rag.settings import Settings
from tests.helpers import SAMPLE, SEC_PDFS

RETURNS = SAMPLE / "returns-and-service.pdf"
QUOTE = ("You may return any bike within 30 days of delivery for a full refund, as long as it has been ridden "
         "less than\n100 km and is undamaged.")


def test_a_quote_is_found_whatever_the_line_breaks_and_spaces() -> None:
    page = "Returns\r\nYou may return any bike within 30 days of delivery for a full refund, as long as it has been ridden less than\r\n100 km and is undamaged. Start a return"  # noqa: E501
    start, end = locate(page, QUOTE)
    assert page[start:end].startswith("You may return") and page[start:end].endswith("undamaged")
    assert locate(page, "Nothing of the kind is on this page at all.") is None
    assert locate(page, "100 km") is None  # too short to tell from another place on the page


def test_the_page_is_drawn_with_the_quote_boxed() -> None:
    image = render_page(RETURNS, 1, [QUOTE])
    assert image.png.startswith(b"\x89PNG") and image.marked
    assert len(image.boxes) == 2  # the sentence runs over two lines of the page
    top_line = min(image.boxes, key=lambda box: box[1])
    assert top_line[0] < 100 < top_line[2] and top_line[1] < image.height / 4  # near the page's top left
    plain = render_page(RETURNS, 1, ["This sentence is nowhere in the returns guide."])
    assert not plain.marked and not plain.boxes
    with pytest.raises(ValueError, match="not a page 9"):
        render_page(RETURNS, 9)


@pytest.mark.skipif(not (SEC_PDFS / "2022 Q3 AAPL.pdf").exists(), reason="the SEC 10-Q PDFs are missing")
def test_a_table_row_of_a_10q_is_found() -> None:
    import pypdfium2 as pdfium

    path = SEC_PDFS / "2022 Q3 AAPL.pdf"
    pdf = pdfium.PdfDocument(str(path))
    page = next(n for n in range(len(pdf)) if "Total net sales" in pdf[n].get_textpage().get_text_range())
    pdf.close()
    assert render_page(path, page + 1, ["Total net sales $ 82,959"]).marked


def test_a_pdf_is_kept_per_version_and_pruned(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    data = RETURNS.read_bytes()
    kept = keep_original(settings, "default", "returns.pdf", "d1", "a" * 64, data)
    assert kept == original_path(settings, "default", "d1", "a" * 64) and kept.read_bytes() == data
    assert keep_original(settings, "default", "notes.md", "d2", "b" * 64, b"# notes") is None  # PDFs only
    newer = keep_original(settings, "default", "returns.pdf", "d1", "c" * 64, data)
    prune(settings, "default", "d1", keep="c" * 64)  # the newer version committed
    assert not kept.exists() and newer.exists()
    assert find_original(settings, "default", "d1", "c" * 64) == newer
    assert find_original(settings, "default", "d1", "a" * 64) is None
    prune(settings, "default", "d1")  # the document deleted
    assert find_original(settings, "default", "d1", "c" * 64) is None


def test_ingest_keeps_the_pdf_and_delete_removes_it(tmp_path: Path) -> None:
    from ingest.pipeline import Ingestor
    from rag.store import KnowledgeBase

    settings = Settings(data_dir=tmp_path / "store")
    [result] = Ingestor(settings).ingest_paths([RETURNS])
    kb = KnowledgeBase(settings)
    record = kb.document(result.doc_id)
    kept = find_original(settings, settings.collection, result.doc_id, record.content_sha256)
    assert kept is not None and kept.read_bytes() == RETURNS.read_bytes()
    kb.delete_document(result.doc_id)
    assert not kept.exists()
    [again] = Ingestor(settings).ingest_paths([RETURNS])
    folder = find_original(settings, settings.collection, again.doc_id, record.content_sha256).parent
    KnowledgeBase(settings).drop()  # the whole collection: its kept PDFs go too
    assert not folder.exists()


def test_a_huge_page_is_drawn_within_the_pixel_bound(tmp_path: Path) -> None:
    """Issue 36 §2: a 14,400 pt square page (the largest the PDF format allows) at the default scale would be
    530 M pixels; it is drawn within MAX_PAGE_PIXELS, and the quote is still found and boxed on the image."""
    import io

    from PIL import Image

    from rag.page_image import MAX_PAGE_PIXELS, MAX_PAGE_SIDE
    from tests.helpers import text_pdf

    line = "The poster says the annual cycling rally starts at the harbour gate at nine."
    path = tmp_path / "poster.pdf"
    path.write_bytes(text_pdf([[line]], size=(14_400, 14_400)))
    image = render_page(path, 1, [line])
    assert image.width * image.height <= MAX_PAGE_PIXELS and max(image.width, image.height) <= MAX_PAGE_SIDE
    assert image.width == image.height > 1000  # scaled down, not cropped: the whole square page
    assert image.marked and all(0 <= box[0] < box[2] <= image.width + 2 and box[1] < image.height / 10
                                for box in image.boxes)  # the line near the top left, on the scaled image
    assert Image.open(io.BytesIO(image.png)).size == (image.width, image.height)

    receipt = tmp_path / "receipt.pdf"  # a long thin page: bounded by its length too
    receipt.write_bytes(text_pdf([[line]], size=(200, 14_400)))
    long_image = render_page(receipt, 1)
    assert max(long_image.width, long_image.height) <= MAX_PAGE_SIDE
