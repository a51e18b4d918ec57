"""Running headers, footers and page numbers: left out of every chunk of a PDF that repeats them, never out of
a short document or a line seen once; the ingest line says so."""

from __future__ import annotations

from pathlib import Path

from ingest.document import PageText
from ingest.furniture import line_key, strip_running_lines
from ingest.loaders import Reading, read_document
from ingest.pipeline import Ingestor, SourceFile
from rag.settings import Settings
from tests.helpers import text_pdf

HEADER = "Kestrel Cycles | Workshop Manual 2026"
PARTS = ["stem", "crank", "saddle clamp", "rear axle", "brake caliper", "pedal", "chainring", "kickstand"]


def _manual(pages: int) -> bytes:
    return text_pdf([[HEADER, f"The {part} is fitted with a torque of {n + 20} Nm.",
                      f"Check the {part} again after the first ride.", f"Page {n} of {pages}"]
                     for n, part in enumerate(PARTS[:pages], 1)])


def test_a_pdf_with_a_running_header_and_footer_stores_no_chunk_holding_them(tmp_path: Path) -> None:
    ingestor = Ingestor(Settings(data_dir=tmp_path / "store", chunk_size=32, chunk_overlap=4))
    [result] = ingestor.ingest([SourceFile("manual.pdf", data=_manual(6))])
    assert result.status == "ok"
    assert "2 running lines left out of 6 pages" in result.line()
    texts = ingestor.kb.chunks.get(where={"source": "manual.pdf"})["documents"]
    assert texts and not any("Workshop Manual" in text or " of 6" in text for text in texts)
    assert sum("torque" in text for text in texts) == 6  # the body of every page stays
    kept = read_document("manual.pdf", _manual(6), reading=Reading(running_lines=False))
    assert all(HEADER in page.text for page in kept.pages)  # RAG_STRIP_RUNNING_LINES=false keeps them


def test_short_documents_and_lines_seen_once_are_kept() -> None:
    two = read_document("two.pdf", _manual(2))
    assert two.running_lines == 0 and all(HEADER in page.text for page in two.pages)
    pages = [PageText(n, f"{'Preface' if n == 1 else 'Body'} {n}\n{PARTS[n]} text.\nmore {PARTS[n]}\n"
                         f"{PARTS[n + 1]} words\nfooter note {n}") for n in range(1, 5)]
    stripped, count = strip_running_lines(pages)
    assert count == 2  # "body #" (3 of 4 tops) and "footer note #"; "Preface 1" once, kept
    assert stripped[0].text.startswith("Preface 1") and stripped[1].text.startswith("saddle clamp text.")
    assert stripped[1].running == ("Body 2", "footer note 2")
    one = [PageText(n, f"Intro {n}\n{PARTS[n]} a\n{PARTS[n]} b\nfooter {n}" if n == 1 else f"{PARTS[n]}\nx {n}\n"
                    f"{PARTS[n]} c\n{PARTS[n]} d") for n in range(1, 5)]
    assert strip_running_lines(one)[1] == 0  # "footer #" once: kept


def test_a_repeated_line_inside_the_body_stays() -> None:
    pages = [PageText(n, f"Title {n}\nintro\nmore\nSee the table below.\nend {n}\nlast {n}\nfinal {n}") for n in range(1, 5)]
    stripped, _ = strip_running_lines(pages)
    assert all("See the table below." in page.text for page in stripped)


def test_digits_and_whitespace_fold() -> None:
    assert line_key("Apple Inc. | Q3 2023  Form 10-Q | 10") == line_key("apple inc. | Q2 2022 Form 10-Q | 7")
    assert line_key("Page 3 of 40") == "page # of #"


def test_a_document_made_only_of_lines_that_would_run_keeps_its_text(tmp_path: Path) -> None:
    """Issue 36 §8: pages of one line each, differing only in numbers, are the document, not its furniture."""
    invoices = text_pdf([[f"Invoice {1000 + n} for order {70 + n}, total {20 * n} EUR"] for n in range(1, 5)])
    read = read_document("invoices.pdf", invoices)
    assert [page.text for page in read.pages] == [f"Invoice {1000 + n} for order {70 + n}, total {20 * n} EUR"
                                                  for n in range(1, 5)]
    assert read.running_lines == 0 and all(page.running == () for page in read.pages)  # nothing was left out
    ingestor = Ingestor(Settings(data_dir=tmp_path / "store"))
    [result] = ingestor.ingest([SourceFile("invoices.pdf", data=invoices)])
    assert result.status == "ok" and "running line" not in result.line()
    assert "Invoice 1003" in " ".join(ingestor.kb.chunks.get(where={"source": "invoices.pdf"})["documents"])
