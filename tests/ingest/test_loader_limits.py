"""Hostile files: zip and decompression bombs, tag floods, odd encodings and odd names. Each fails alone,
with a reason, in bounded memory; text in UTF-16 is read."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from pypdf import PdfWriter, apply_configuration
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

import ingest.document
import ingest.docx
import ingest.pdf
from ingest.loaders import IngestError, inflate_limit, load_document, safe_source_name
from tests.helpers import REPO

SAMPLE = REPO / "data" / "sample"
W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
MC = "http://schemas.openxmlformats.org/markup-compatibility/2006"
PARAGRAPH = b"<w:p><w:r><w:t>a</w:t></w:r></w:p>"
MB = 1_000_000


def _docx(body: bytes = b"", *, document: bytes | None = None, extra: dict[str, bytes] | None = None) -> bytes:
    """A minimal DOCX: content types, the package relationship, and word/document.xml."""
    if document is None:
        document = (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
                    f'<w:document xmlns:w="{W}" xmlns:mc="{MC}"><w:body>').encode() + body + b"</w:body></w:document>"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/'
                         'package/2006/content-types"><Override PartName="/word/document.xml" ContentType="application/'
                         'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>')
        archive.writestr("_rels/.rels", '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/'
                         'package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
                         'officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/>'
                         '</Relationships>')
        archive.writestr("word/document.xml", document)
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return out.getvalue()


def _bomb(mb: float) -> bytes:
    return _docx(PARAGRAPH * int(mb * MB / len(PARAGRAPH)))


# ---- DOCX: zip bombs ------------------------------------------------------------------------------------
def test_the_inflate_limit_follows_the_file_size_limit_up_to_a_cap() -> None:
    assert inflate_limit(1 * MB) == 20 * MB
    assert inflate_limit(50 * MB) == inflate_limit(None) == 200 * MB


def test_a_zip_bomb_fails_by_its_declared_size() -> None:
    data = _bomb(30)
    assert len(data) < 0.5 * MB  # a small file...
    with pytest.raises(IngestError, match=r"^word/document.xml declares 30 MB uncompressed, over the limit of 20 MB: "
                                          r"refused as a likely zip bomb"):
        load_document("bomb.docx", data, max_bytes=1 * MB)  # ...whose XML inflates past 20x the size limit


def test_parts_that_add_up_past_the_limit_fail() -> None:
    headers = {f"word/header{i}.xml": b"<w:hdr/>" + bytes(8 * MB) for i in range(3)}
    with pytest.raises(IngestError, match=r"its XML parts declare 24 MB uncompressed in all, over the limit of 20 MB"):
        load_document("headers.docx", _docx(b"<w:p><w:r><w:t>hi</w:t></w:r></w:p>", extra=headers), max_bytes=1 * MB)


def test_media_that_inflate_far_are_never_inflated() -> None:
    """Images are not read, so their size cannot hurt; a document full of BMP screenshots still goes in."""
    images = {f"word/media/image{i}.bmp": bytes(30 * MB) for i in range(2)}
    (page,) = load_document("shots.docx", _docx(b"<w:p><w:r><w:t>hi</w:t></w:r></w:p>", extra=images), max_bytes=MB)
    assert page.text == "hi"


def test_a_lying_declared_size_is_caught_by_the_bytes_inflated(monkeypatch: pytest.MonkeyPatch) -> None:
    """The declared sizes pass, yet reading stops once the bytes inflated pass the limit."""
    data = _docx((b"<!--" + b"a" * MB + b"-->") * 30)  # 30 MB that parse fast (comments), to reach the limit soon
    infolist = zipfile.ZipFile.infolist

    def lying_infolist(self: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
        infos = []
        for info in infolist(self):
            fake = zipfile.ZipInfo(info.filename)
            fake.file_size = 1_000
            infos.append(fake)
        return infos

    monkeypatch.setattr(zipfile.ZipFile, "infolist", lying_infolist)
    with pytest.raises(IngestError, match=r"^word/document.xml inflates to more than 20 MB: refused as a likely "):
        load_document("liar.docx", data, max_bytes=1 * MB)


def _declare_size(data: bytes, name: str, size: int) -> bytes:
    """The zip ``data`` with the uncompressed size of member ``name`` rewritten in both of its headers."""
    patched = bytearray(data)
    encoded = name.encode()
    local = data.index(b"PK\x03\x04")  # the first local header; ours is the one carrying its name
    while data[local + 30: local + 30 + len(encoded)] != encoded:
        local = data.index(b"PK\x03\x04", local + 4)
    central = data.index(b"PK\x01\x02")
    while data[central + 46: central + 46 + len(encoded)] != encoded:
        central = data.index(b"PK\x01\x02", central + 4)
    struct.pack_into("<I", patched, local + 22, size)
    struct.pack_into("<I", patched, central + 24, size)
    return bytes(patched)


def test_a_zip_whose_headers_lie_fails_alone() -> None:
    data = _declare_size(_bomb(30), "word/document.xml", 1_000)
    assert zipfile.ZipFile(io.BytesIO(data)).getinfo("word/document.xml").file_size == 1_000
    with pytest.raises(IngestError):  # zipfile stops at the declared size and finds the CRC wrong
        load_document("liar.docx", data, max_bytes=1 * MB)


def test_one_huge_text_node_fails_alone() -> None:
    data = _docx(b"<w:p><w:r><w:t>" + b"a" * (25 * MB) + b"</w:t></w:r></w:p>")
    with pytest.raises(IngestError, match="safety limit of the XML reader"):
        load_document("node.docx", data, max_bytes=2 * MB)


def test_the_text_of_a_docx_is_capped_like_a_text_files(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _docx(PARAGRAPH * 2_000)
    assert ingest.document.text_limit(len(data)) == len(data)  # as much text as a text file of the size limit
    monkeypatch.setattr(ingest.docx, "text_limit", lambda max_bytes: 1_000)
    with pytest.raises(IngestError, match=r"its text runs over 1,000 characters"):
        load_document("long.docx", data)


def test_a_zip_of_too_many_parts_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest.docx, "MAX_ZIP_MEMBERS", 5)
    parts = {f"word/part{i}.xml": b"<x/>" for i in range(5)}
    with pytest.raises(IngestError, match=r"a zip of 8 parts \(a document has far fewer\)"):
        load_document("parts.docx", _docx(extra=parts))


_PEAK = """
import json, resource, sys, time
from ingest.loaders import IngestError, load_document
name, path, max_bytes = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = open(path, "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
try:
    outcome = sum(len(page.text) for page in load_document(name, data, max_bytes=max_bytes))
except IngestError as error:
    outcome = str(error)
growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps({"outcome": outcome, "growth_mb": growth, "seconds": time.perf_counter() - started}))
"""


def _peak_growth(tmp_path: Path, name: str, data: bytes, max_bytes: int) -> dict:
    """Load in a fresh process: what came out, and how far its peak memory grew (MB)."""
    path = tmp_path / name
    path.write_bytes(data)
    done = subprocess.run([sys.executable, "-c", _PEAK, name, str(path), str(max_bytes)], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_docx_of_dense_xml_is_read_in_bounded_memory(tmp_path: Path) -> None:
    """8 MB of one-letter paragraphs: python-docx built a tree of ~110 MB for it; the stream reader a few MB."""
    run = _peak_growth(tmp_path, "dense.docx", _bomb(8), max_bytes=1 * MB)
    assert run["outcome"] == 2 * (8 * MB // len(PARAGRAPH)) - 1  # every "a", one per line
    assert run["growth_mb"] < 40, run


def test_an_html_flood_of_tags_is_read_in_bounded_memory(tmp_path: Path) -> None:
    """1 MB of <p>a</p>: a BeautifulSoup tree took ~200 MB and 16 s; the event parser keeps only the text."""
    data = b"<html><body>" + b"<p>a</p>" * (MB // 8) + b"</body></html>"
    run = _peak_growth(tmp_path, "flood.html", data, max_bytes=2 * MB)
    assert run["outcome"] == 2 * (MB // 8) - 1
    assert run["growth_mb"] < 40, run


# ---- DOCX: what the stream reader extracts --------------------------------------------------------------
def test_docx_text_in_document_order() -> None:
    body = b"""
      <w:p><w:pPr><w:tabs><w:tab w:val="left" w:pos="720"/></w:tabs></w:pPr>
        <w:r><w:t>Depot</w:t></w:r><w:r><w:tab/><w:t xml:space="preserve">opens </w:t></w:r>
        <w:hyperlink><w:r><w:t>at seven</w:t></w:r></w:hyperlink><w:r><w:br/><w:t>sharp.</w:t></w:r>
        <w:del><w:r><w:delText>at six</w:delText></w:r></w:del></w:p>
      <w:tbl><w:tr><w:tc><w:p><w:r><w:t>Model</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>Cargo</w:t></w:r></w:p></w:tc></w:tr>
             <w:tr><w:tc><w:p/></w:tc><w:tc><w:p><w:r><w:t>Kestrel</w:t></w:r></w:p></w:tc></w:tr></w:tbl>
      <w:p><w:r><w:t>Box: </w:t></w:r><w:r><mc:AlternateContent>
        <mc:Choice Requires="wps"><w:drawing><w:txbxContent>
          <w:p><w:r><w:t>inside the box</w:t></w:r></w:p></w:txbxContent></w:drawing></mc:Choice>
        <mc:Fallback><w:pict><w:txbxContent>
          <w:p><w:r><w:t>inside the box</w:t></w:r></w:p></w:txbxContent></w:pict></mc:Fallback>
      </mc:AlternateContent></w:r><w:r><w:t>after.</w:t></w:r></w:p>
      <w:sdt><w:sdtContent><w:p><w:r><w:t>In a content control.</w:t></w:r></w:p></w:sdtContent></w:sdt>
    """
    (page,) = load_document("depot.docx", _docx(body))
    assert page.text.split("\n") == [
        "Depot\topens at seven", "sharp.", "Model | Cargo", " | Kestrel", "Box: ", "inside the box", "after.",
        "In a content control.",
    ]
    assert page.text.count("inside the box") == 1  # not again from the VML fallback


def test_a_docx_written_by_python_docx_reads_in_document_order() -> None:
    import docx

    document = docx.Document()
    document.add_paragraph("Before the table.")
    table = document.add_table(rows=2, cols=2)
    for r, row in enumerate([["Model", "Cargo"], ["Range", "80 km"]]):
        for c, text in enumerate(row):
            table.rows[r].cells[c].text = text
    document.add_paragraph("After the table.")
    buffer = io.BytesIO()
    document.save(buffer)
    (page,) = load_document("depot.docx", buffer.getvalue())
    assert page.text == "Before the table.\nModel | Cargo\nRange | 80 km\nAfter the table."


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"PK\x03\x04 not really a zip", "not a readable DOCX"),
        (_docx(document=b"<w:document><w:body><w:p>"), "not a readable DOCX"),
    ],
)
def test_broken_docx_fail_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(IngestError, match=reason):
        load_document("broken.docx", data)


def test_a_zip_without_a_document_part_fails() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("hello.txt", "hi")
    with pytest.raises(IngestError, match="not a readable DOCX .*no word/document.xml"):
        load_document("other.docx", out.getvalue())


# ---- PDF -------------------------------------------------------------------------------------------------
def _pdf(pages: int, padding: int) -> bytes:
    """Pages whose content stream says one sentence, then ``padding`` blanks (deflated to almost nothing)."""
    writer = PdfWriter()
    font = DictionaryObject({NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
                             NameObject("/BaseFont"): NameObject("/Helvetica")})
    for number in range(1, pages + 1):
        page = writer.add_blank_page(width=595, height=842)
        content = DecodedStreamObject()
        content.set_data(b"BT /F1 12 Tf 72 720 Td (Page %d says hello.) Tj ET\n" % number + b" " * padding)
        page[NameObject("/Contents")] = writer._add_object(content.flate_encode())
        fonts = DictionaryObject({NameObject("/F1"): font})
        page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): fonts})
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def test_pdf_pages_read_as_before() -> None:
    pages = load_document("hello.pdf", _pdf(2, 0))
    assert [page.text for page in pages] == ["Page 1 says hello.", "Page 2 says hello."]


def test_a_pdf_whose_content_inflates_past_the_limit_fails() -> None:
    data = _pdf(3, 600_000)
    assert len(data) < 50_000
    with pytest.raises(IngestError, match=r"its pages' content inflates to more than 1 MB by page 2: refused as a "
                                          r"likely decompression bomb"):
        load_document("bomb.pdf", data, max_bytes=50_000)  # 20 x 50 KB


def test_the_text_of_a_pdf_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest.pdf, "text_limit", lambda max_bytes: 500)
    with pytest.raises(IngestError, match=r"its text runs over 500 characters by page 1"):
        load_document("returns.pdf", (SAMPLE / "returns-and-service.pdf").read_bytes())


def test_a_pdf_past_a_limit_of_pypdf_fails_with_a_reason() -> None:
    with apply_configuration(zlib_maximum_output_length=10), pytest.raises(IngestError, match="safety limit"):
        load_document("returns.pdf", (SAMPLE / "returns-and-service.pdf").read_bytes())


# ---- text encodings ------------------------------------------------------------------------------------
TEXT = "Crème brûlée costs £4 — café\nThe depot opens at seven.\n"


@pytest.mark.parametrize(
    "data",
    [
        TEXT.encode("utf-16"),  # with its BOM
        b"\xff\xfe" + TEXT.encode("utf-16-le"),
        b"\xfe\xff" + TEXT.encode("utf-16-be"),
        TEXT.encode("utf-16-le"),  # no BOM: NULs in every other byte
        TEXT.encode("utf-16-be"),
        TEXT.encode("utf-32"),
    ],
    ids=["utf16", "utf16le-bom", "utf16be-bom", "utf16le", "utf16be", "utf32"],
)
def test_utf16_text_is_read(data: bytes) -> None:
    (page,) = load_document("menu.txt", data)
    assert page.text == TEXT.strip()


def test_utf16_html_is_read() -> None:
    (page,) = load_document("menu.html", "<html><body><p>Crème brûlée</p><p>£4</p></body></html>".encode("utf-16"))
    assert page.text == "Crème brûlée\n£4"


def test_latin1_still_reads_and_binary_still_fails() -> None:
    (page,) = load_document("menu.txt", TEXT.encode("cp1252"))
    assert page.text == TEXT.strip()
    pdf = (SAMPLE / "returns-and-service.pdf").read_bytes()
    for binary in [bytes(range(256)) * 20, b"\xff\xfe" + bytes(range(256)) * 20, pdf]:
        with pytest.raises(IngestError, match="binary data, not text"):
            load_document("data.txt", binary)


# ---- HTML ----------------------------------------------------------------------------------------------
def test_html_visible_text() -> None:
    html = (b"<html><head><title>Hidden title</title><style>p {color: red}</style>"
            b"<body><script>var x = '<p>no</p>';</script><script/><p>One &amp; <b>two</b><br>three</p>"
            b"<noscript>no js</noscript><svg><text>drawn</text></svg><ul><li>four</li><li>five</li></ul>"
            b"<template><p>later</p></template><div>six&nbsp;seven</div></body></html>")
    (page,) = load_document("page.html", html)
    assert page.text == "One & two\nthree\nfour\nfive\nsix seven"


# ---- names ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("report.pdf", "report.pdf"),
        ("reports/2023/q3.pdf", "reports/2023/q3.pdf"),
        ("../../evil.txt", "evil.txt"),
        ("/etc/passwd.txt", "etc/passwd.txt"),
        ("a/../../b/./c.md", "b/c.md"),
        ("C:\\Users\\me\\notes.md", "Users/me/notes.md"),
        ("\\\\server\\share\\x.txt", "server/share/x.txt"),
        ("..\\..\\evil.txt", "evil.txt"),
        ("$x^2$ \\(latex\\).txt", "$x^2$ \\(latex\\).txt"),  # a backslash in a name is no folder
        ("line\nbreak\r\n.txt", "line break .txt"),
        ("bell\x07\x00.txt", "bell__.txt"),
        ("invoice\u202egpj.exe", "invoice_gpj.exe"),
        ("  spaced  /  name .txt ", "spaced/name .txt"),
        ("..", "unnamed"),
        ("", "unnamed"),
        ("/", "unnamed"),
    ],
)
def test_safe_source_name(name: str, safe: str) -> None:
    assert safe_source_name(name) == safe


def test_a_long_name_keeps_its_end() -> None:
    safe = safe_source_name("d/" * 300 + "report.pdf")
    assert len(safe) <= 255 and safe.endswith("/report.pdf") and not safe.startswith("/")
