"""Bad and odd inputs through the CLI: broken, encrypted, empty, binary, bombs, encodings, markup, names."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

from reliability_suite.core import QUESTION, Outcome, case, cli, ingest_one, python, run
from tests.helpers import SAMPLE

# -- bad inputs through the CLI
def _pdf(pages: int = 1, text: bool = True, password: str | None = None) -> bytes:
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, NameObject

    writer = PdfWriter()
    for _ in range(pages):
        page = writer.add_blank_page(width=595, height=842)
        if text:
            stream = DecodedStreamObject()
            stream.set_data(b"BT /F1 12 Tf 72 720 Td (A page of text about bicycles.) Tj ET")
            page[NameObject("/Contents")] = writer._add_object(stream)
    if password:
        writer.encrypt(user_password=password, owner_password=password + "-owner", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _docx_bomb(inflated_gb: float = 1.2) -> bytes:
    """A DOCX whose word/document.xml inflates to ``inflated_gb`` GB of one-letter paragraphs (~1.2 MB zipped)."""
    paragraph = b"<w:p><w:r><w:t>a</w:t></w:r></w:p>"
    block = paragraph * (1_000_000 // len(paragraph))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.'
                         'org/package/2006/content-types"><Override PartName="/word/document.xml" ContentType='
                         '"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>')
        archive.writestr("_rels/.rels", '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.'
                         'org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.'
                         'openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/'
                         'document.xml"/></Relationships>')
        with archive.open("word/document.xml", "w", force_zip64=True) as part:
            part.write(b'<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/'
                       b'wordprocessingml/2006/main"><w:body>')
            for _ in range(int(inflated_gb * 1000)):
                part.write(block)
            part.write(b"</w:body></w:document>")
    return out.getvalue()


BAD = [
    ("truncated PDF", "truncated.pdf", lambda: (SAMPLE / "returns-and-service.pdf").read_bytes()[:600],
     "failed: not a readable PDF", "tests/ingest/test_loaders.py::test_bad_files_fail_with_a_reason"),
    ("encrypted PDF", "locked.pdf", lambda: _pdf(password="user-secret"), "failed: encrypted PDF: it needs a password",
     "tests/ingest/test_loaders.py::test_encrypted_pdf_needs_its_password"),
    ("image-only PDF", "scan.pdf", lambda: _pdf(pages=2, text=False), "failed: no text layer in any of its 2 pages",
     "tests/ingest/test_loaders.py::test_image_only_pdf_has_no_text_layer"),
    ("0-byte file", "empty.txt", lambda: b"", "failed: empty file",
     "tests/ingest/test_ingest.py::test_bad_files_fail_alone_and_the_rest_lands"),
    ("binary named .txt", "photo.txt", lambda: bytes(range(256)) * 40, "failed: .*binary",
     "tests/ingest/test_loaders.py::test_bad_files_fail_with_a_reason"),
    ("not-a-zip .docx", "broken.docx", lambda: b"not a zip at all", "failed: not a readable DOCX",
     "tests/ingest/test_loader_limits.py::test_broken_docx_fail_with_a_reason"),
    ("unsupported extension", "sheet.xlsx", lambda: b"PK\x03\x04 a spreadsheet", "failed: unsupported file type '.xlsx'",
     "tests/ingest/test_loaders.py::test_bad_files_fail_with_a_reason"),
    ("DOCX zip bomb (1.2 GB inflated)", "bomb.docx", _docx_bomb, "failed: .*(inflate|bomb|limit)",
     "tests/ingest/test_loader_limits.py::test_a_zip_bomb_fails_by_its_declared_size"),
]
def _bad(name: str, make: Callable[[], bytes], expect: str) -> Callable[[Path, dict[str, str]], Outcome]:
    return lambda work, env: ingest_one(name, make(), expect)(work, env)  # the bytes made when the case runs


for _title, _name, _make, _expect, _test in BAD:
    case(f"bad input: {_title}", f"`{_name}: {_expect}`, exit 1, store unchanged", _test)(_bad(_name, _make, _expect))

case("bad input: over-size file (limit 1 MB)", "`failed: too large`, exit 1",
     "tests/ingest/test_ingest.py::test_bad_files_fail_alone_and_the_rest_lands")(
    lambda work, env: ingest_one("big.txt", b"word " * 400_000, r"failed: too large: 2\.0 MB, over the limit of 1 MB",
                                 env_extra={"RAG_MAX_FILE_MB": "1"})(work, env))
case("text: Latin-1", "`ok`, text decoded (é kept)", "tests/ingest/test_loaders.py::test_latin1_text_is_decoded")(
    lambda work, env: ingest_one("latin1.txt", "Caf\xe9 cr\xe8me: the d\xe9p\xf4t opens at n\xfcne.".encode("latin-1"),
                                 r"latin1\.txt: ok 1 chunks", rc=0, stored=True)(work, env))
case("text: UTF-16 without BOM", "`ok`", "tests/ingest/test_loader_limits.py::test_utf16_text_is_read")(
    lambda work, env: ingest_one("utf16.txt", "Die Lieferung dauert drei Tage. 送货需要三天。".encode("utf-16-le"),
                                 r"utf16\.txt: ok 1 chunks", rc=0, stored=True)(work, env))
case("HTML with <script> and onerror", "`ok`; stored text has no script, handler or markup",
     "tests/app/test_app_pages.py::test_document_text_is_rendered_as_text")(
    lambda work, env: _html_case(work, env))
case("5 MB single-line Markdown", "`ok` with its repeats left out; the other documents still lead the dense search",
     "tests/rag/test_store_faults.py::test_a_repetitive_file_is_stored_once_per_distinct_chunk_and_never_poisons_search")(
    lambda work, env: _repetitive_case(work, env))


HTML = (b"<html><body><h1>Bell care</h1><script>alert('pwned')</script><p>Oil the bell yearly."
        b"<img src=x onerror=\"alert('xss')\"></p><a href=\"javascript:alert(1)\">link</a></body></html>")

STORED_TEXT = """
import json, sys
from rag.settings import Settings
from rag.store import KnowledgeBase
kb = KnowledgeBase(Settings())
rows = kb.chunks.get(where={"source": sys.argv[1]}, include=["documents"])
print(json.dumps(rows["documents"]))
"""

DENSE_TOP = """
import json, sys
from rag.pipeline import RagPipeline
from rag.retrieve import retrieve
from rag.settings import Settings
pipeline = RagPipeline(Settings())
kb = pipeline.knowledge_base()
found = retrieve(sys.argv[1], kb, pipeline.embedder_for(kb), pipeline.settings, mode="dense", top_k=5)
print(json.dumps([c.chunk.source for c in found.candidates]))
"""


def _html_case(work: Path, env: dict[str, str]) -> Outcome:
    outcome = ingest_one("bell.html", HTML, r"bell\.html: ok 1 chunks", rc=0, stored=True)(work, env)
    stored = json.loads(run(python(STORED_TEXT, "bell.html"), env).lines[-1])
    inert = not any(marker in text for text in stored for marker in ("alert", "<", "onerror", "javascript"))
    return Outcome(f"{outcome.observed}; stored: {stored!r:.60}", outcome.passed and inert, outcome.added,
                   outcome.rss_mb)


def _repetitive_case(work: Path, env: dict[str, str]) -> Outcome:
    unit = b"lorem ipsum dolor sit amet "
    outcome = ingest_one("flood.md", unit * (5_000_000 // len(unit)), r"flood\.md: ok \d chunks \([\d,]+ repeated",
                         rc=0, stored=True)(work, env)
    top = json.loads(run(python(DENSE_TOP, QUESTION), env).lines[-1])
    return Outcome(f"{outcome.observed}; dense top-5 {top}", outcome.passed and "flood.md" not in top[:1]
                   and top.count("flood.md") <= 2, outcome.added, outcome.rss_mb)


@case("names: newline, emoji, '../' and absolute upload names",
      "one line per file, names cleaned (`week ly 📄.txt`, `evil.txt`, `etc/passwd.txt`)",
      "tests/ingest/test_loader_limits.py::test_safe_source_name")
def _names(work: Path, env: dict[str, str]) -> Outcome:
    (work / "week\nly 📄.txt").write_text("The weekly report lists 3 new dealers.")
    done = run(cli("ingest", str(work / "week\nly 📄.txt")), env)
    upload = run(python("""
import sys
from ingest.pipeline import Ingestor, SourceFile
from rag.settings import Settings
for result in Ingestor(Settings()).ingest([SourceFile("../../evil.txt", data=b"Evil says the shed key is blue."),
                                          SourceFile("/etc/passwd.txt", data=b"Root owns the passwd file.")]):
    print(result.line())
"""), env)
    lines = done.lines + upload.lines
    expected = ["week ly 📄.txt: ok 1 chunks", "evil.txt: ok 1 chunks", "etc/passwd.txt: ok 1 chunks"]
    return Outcome(" | ".join(lines), lines == expected and done.clean and upload.clean,
                   ["week ly 📄.txt", "evil.txt", "etc/passwd.txt"], max(done.rss_mb, upload.rss_mb))


@case("same file twice; one name in two folders", "`ok`, `skipped (same file given twice)`; `dirA/notes.txt` and "
      "`dirB/notes.txt` both stored", "tests/ingest/test_reliability.py::test_one_name_in_two_folders_is_two_documents")
def _twice(work: Path, env: dict[str, str]) -> Outcome:
    for folder, text in (("dirA", "Alpha: the red valve opens at noon."), ("dirB", "Beta: the blue pump stops at dusk.")):
        (work / folder).mkdir()
        (work / folder / "notes.txt").write_text(text)
    (work / "memo.txt").write_text("The memo says the canteen closes at three.")
    done = run(cli("ingest", str(work / "memo.txt"), str(work / "dirA"), str(work / "dirB"), str(work / "memo.txt")),
               env)
    expected = ["memo.txt: ok 1 chunks", "dirA/notes.txt: ok 1 chunks", "dirB/notes.txt: ok 1 chunks",
                "memo.txt: skipped (same file given twice)"]
    return Outcome(" | ".join(done.lines), done.lines == expected and done.rc == 0 and done.clean,
                   ["memo.txt", "dirA/notes.txt", "dirB/notes.txt"], done.rss_mb)
