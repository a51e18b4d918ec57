"""Each format's text comes out; each kind of bad file fails with a reason a user can act on."""

from __future__ import annotations

import io

import pytest
from pypdf import PdfReader, PdfWriter

from ingest.loaders import IngestError, load_document
from tests.helpers import REPO, SEC_PDFS

SAMPLE = REPO / "data" / "sample"


def test_pdf_pages_are_numbered_from_one_and_keep_their_text() -> None:
    pages = load_document("returns.pdf", (SAMPLE / "returns-and-service.pdf").read_bytes())
    assert [page.number for page in pages] == [1, 2]
    assert "30 days of delivery" in pages[0].text
    assert "first service is free" in pages[1].text


def test_real_sec_filing_keeps_every_text_page() -> None:
    data = (SEC_PDFS / "2023 Q3 AAPL.pdf").read_bytes()
    pages = load_document("2023 Q3 AAPL.pdf", data)
    assert len(pages) == len(PdfReader(io.BytesIO(data)).pages)
    assert any("81,797" in page.text for page in pages)


def test_html_keeps_visible_text_only() -> None:
    (page,) = load_document("warranty.html", (SAMPLE / "warranty.html").read_bytes())
    assert "lifetime warranty for the first owner" in page.text  # inline <strong> stays in its sentence
    assert "console.log" not in page.text and "font-family" not in page.text
    assert page.number is None


def test_markdown_and_text() -> None:
    (md,) = load_document("handbook.md", (SAMPLE / "employee-handbook.md").read_bytes())
    assert "28 days of paid holiday" in md.text
    (txt,) = load_document("faq.TXT", (SAMPLE / "product-faq.txt").read_bytes())
    assert "4.5 hours" in txt.text


def test_docx_paragraphs_and_tables() -> None:
    import docx

    document = docx.Document()
    document.add_paragraph("The depot opens at seven.")
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text = "Model"
    table.rows[0].cells[1].text = "Cargo"
    buffer = io.BytesIO()
    document.save(buffer)
    (page,) = load_document("depot.docx", buffer.getvalue())
    assert "The depot opens at seven." in page.text
    assert "Model | Cargo" in page.text


def test_latin1_text_is_decoded() -> None:
    (page,) = load_document("menu.txt", "Crème brûlée costs £4 — café".encode("cp1252"))
    assert page.text == "Crème brûlée costs £4 — café"


def _pdf_bytes(writer: PdfWriter) -> bytes:
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def _one_page_pdf() -> PdfWriter:
    writer = PdfWriter()
    writer.append(str(SAMPLE / "returns-and-service.pdf"))
    return writer


def test_pdf_with_only_an_owner_password_opens() -> None:
    writer = _one_page_pdf()
    writer.encrypt(user_password="", owner_password="owner-secret", algorithm="AES-128")
    pages = load_document("limited.pdf", _pdf_bytes(writer))
    assert "30 days of delivery" in pages[0].text


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("empty.pdf", lambda: b"", "empty file"),
        ("empty.txt", lambda: b"   \n", "empty file"),
        ("truncated.pdf", lambda: (SAMPLE / "returns-and-service.pdf").read_bytes()[:600], "not a readable PDF"),
        ("fake.pdf", lambda: b"%PDF-1.7 this is not really a pdf", "not a readable PDF"),
        ("binary.txt", lambda: bytes(range(256)) * 20, "binary data"),
        ("notes.xlsx", lambda: b"PK\x03\x04 spreadsheet", "unsupported file type '.xlsx'"),
        ("README", lambda: b"no suffix", "unsupported file type '(none)'"),
        ("broken.docx", lambda: b"not a zip at all", "not a readable DOCX"),
    ],
)
def test_bad_files_fail_with_a_reason(name: str, make, reason: str) -> None:
    with pytest.raises(IngestError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        load_document(name, make())


def test_encrypted_pdf_needs_its_password() -> None:
    writer = _one_page_pdf()
    writer.encrypt(user_password="user-secret", owner_password="owner-secret", algorithm="AES-128")
    with pytest.raises(IngestError, match="encrypted PDF: it needs a password"):
        load_document("locked.pdf", _pdf_bytes(writer))


def test_image_only_pdf_has_no_text_layer() -> None:
    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    writer.add_blank_page(width=595, height=842)
    with pytest.raises(IngestError, match="no text layer in any of its 2 pages"):
        load_document("scan.pdf", _pdf_bytes(writer))


def test_over_the_size_limit() -> None:
    with pytest.raises(IngestError, match=r"too large: 2\.0 MB, over the limit of 1 MB"):
        load_document("big.txt", b"a" * 2_000_000, max_bytes=1_000_000)
