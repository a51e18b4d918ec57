"""OCR, with the real PP-OCRv4 models of rapidocr-onnxruntime: an image-only PDF ingests and a question finds it;
OCR off says so; a page OCR cannot read fails alone; an image file ingests; the boxes become lines."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from ingest.loaders import IngestError, Reading, read_document
from ingest.ocr import lines_of
from ingest.pipeline import Ingestor, SourceFile
from rag.pipeline import RagPipeline
from rag.settings import Settings
from tests.helpers import text_image

SCAN_LINES = ["Kestrel Cycles warranty card", "The frame is covered for ten years.",
              "Batteries are covered for two years or 800 charges."]


def _pdf_of(*images: Image.Image) -> bytes:
    """An image-only PDF (what a scanner writes): each image one page, no text layer."""
    buffer = io.BytesIO()
    extra = {"save_all": True, "append_images": list(images[1:])} if len(images) > 1 else {}
    images[0].save(buffer, "PDF", resolution=150, **extra)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def scan() -> Image.Image:
    return text_image(SCAN_LINES)


def test_an_image_only_pdf_ingests_by_ocr_and_a_question_finds_it(tmp_path: Path, scan: Image.Image) -> None:
    settings = Settings(data_dir=tmp_path / "store", reranker="none")
    ingestor = Ingestor(settings)
    [result] = ingestor.ingest([SourceFile("scan.pdf", data=_pdf_of(scan))])
    assert result.status == "ok", result.line()
    assert result.ocr_pages == 1 and "1 page read by OCR" in result.line()
    stored = ingestor.kb.chunks.get(where={"source": "scan.pdf"})
    assert all(meta.get("ocr") is True for meta in stored["metadatas"])
    assert "covered for ten years" in " ".join(stored["documents"]).replace("  ", " ")

    answer = RagPipeline(settings).ask("How long is the frame covered?", generate=False)
    assert answer.chunks[0].source == "scan.pdf"


def test_ocr_off_fails_a_scan_with_that_reason(scan: Image.Image) -> None:
    with pytest.raises(IngestError, match=r"no text layer in any of its 1 pages .*OCR is off \(RAG_OCR=off\)"):
        read_document("scan.pdf", _pdf_of(scan), reading=Reading(ocr="off"))
    with pytest.raises(IngestError, match="OCR is off"):
        read_document("scan.png", b"\x89PNG\r\n\x1a\n" + b"0" * 100, reading=Reading(ocr="off"))


def test_a_page_ocr_cannot_read_fails_alone(scan: Image.Image) -> None:
    blank = Image.new("RGB", scan.size, "white")
    read = read_document("two.pdf", _pdf_of(scan, blank))
    assert [page.number for page in read.pages] == [1]
    assert read.failed_pages == [(2, "OCR found no text on it")]
    with pytest.raises(IngestError, match="OCR could not read its page: OCR found no text on it"):
        read_document("blank.pdf", _pdf_of(blank))


def test_an_image_file_ingests_by_ocr(tmp_path: Path, scan: Image.Image) -> None:
    buffer = io.BytesIO()
    scan.save(buffer, "PNG")
    [result] = Ingestor(Settings(data_dir=tmp_path / "store")).ingest([SourceFile("card.png", data=buffer.getvalue())])
    assert result.status == "ok" and result.ocr_pages == 1, result.line()
    read = read_document("card.png", buffer.getvalue())
    text = read.pages[0].text
    assert read.pages[0].ocr and text.splitlines()[0].lower().replace(" ", "") == "kestrelcycleswarrantycard"
    with pytest.raises(IngestError, match="not a readable image"):
        read_document("broken.jpg", b"\xff\xd8\xff not a jpeg at all")


def test_a_pdf_with_a_text_layer_is_never_rendered_in_auto_mode() -> None:
    from tests.helpers import text_pdf

    read = read_document("text.pdf", text_pdf([["A page with a text layer long enough to be read as it is."]]))
    assert read.ocr_pages == 0 and read.pages[0].text.startswith("A page with a text layer")


def test_boxes_become_lines_left_to_right_top_to_bottom() -> None:
    def box(x: int, y: int, text: str) -> list:
        return [[[x, y], [x + 100, y], [x + 100, y + 30], [x, y + 30]], text, 0.9]

    boxes = [box(300, 102, "$ 81,797"), box(10, 100, "Total net sales"), box(10, 50, "Three Months Ended"),
             box(10, 150, "中文"), box(112, 151, "文本")]
    assert lines_of(boxes) == ["Three Months Ended", "Total net sales $ 81,797", "中文文本"]
