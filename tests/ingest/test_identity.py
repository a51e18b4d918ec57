"""Chunks that know their document (issue 33): the identity found for each format, the section of each chunk, and
the context line that embedding, BM25 and the reranker read but the answer never quotes."""

from __future__ import annotations

import io

import numpy as np
import pytest

from ingest.identity import (
    chunk_metadata,
    chunk_sections,
    context_line,
    document_context,
    file_words,
    numbered_headings,
    section_at,
)
from ingest.loaders import read_document
from ingest.pipeline import Ingestor, SourceFile
from ingest.document import PageText
from tests.helpers import quarterly_filing as filing, text_pdf

COMPANIES = {  # file name -> (name on the cover and in the footer, its figures)
    "filing-a.pdf": ("Zenith Foods Inc.", "4,812", "7"),
    "filing-b.pdf": ("Borealis Mining Corp.", "9,530", "12"),
    "filing-c.pdf": ("Calypso Airlines Ltd.", "2,264", "3"),
}


def test_a_pdf_is_known_by_its_cover_period_and_running_footer() -> None:
    data = filing(*COMPANIES["filing-a.pdf"])
    pages = read_document("filing-a.pdf", data).pages
    assert all("Zenith" not in page.text for page in pages[1:])  # the footer is left out of the text
    context = document_context("filing-a.pdf", data, pages)
    assert context.identity.title == "Zenith Foods Inc."  # the cover's largest line
    line = context.identity.line(200)
    assert "For the quarterly period ended March 31, 2024" in line
    assert "Zenith | Q1 2024 Form 10-Q" in line and "| 2" not in line  # the footer, its page number taken off
    assert len(context.identity.line(40)) <= 40
    # numbered lines are its sections, the innermost last
    assert section_at(context.headings, 2, 200) == ("PART I. FINANCIAL INFORMATION > Item 2. Discussion "
                                                    "and Analysis")
    assert section_at(context.headings, 3, 10).endswith("Note 3 - Inventories")
    assert section_at(context.headings, 4, 10) == "PART I. FINANCIAL INFORMATION > Item 4. Controls and Procedures"


def test_a_pdf_metadata_title_counts_unless_it_is_an_id() -> None:
    named = text_pdf([["A short note on pumps."]], title="Pump Service Manual")
    assert document_context("x.pdf", named, read_document("x.pdf", named).pages).identity.title == \
        "Pump Service Manual"
    coded = text_pdf([["A short note on pumps."]], title="0001018724-23-000018")
    identity = document_context("2023 Q3 AMZN.pdf", coded, read_document("2023 Q3 AMZN.pdf", coded).pages).identity
    assert identity.title == "2023 Q3 AMZN" and "0001018724" not in identity.line(200)


def test_a_table_of_contents_situates_nothing() -> None:
    toc = PageText(2, "\n".join(["Part I", "Item 1. Financial Statements", "Item 2. Discussion", "Item 3. Risk",
                                 "Item 4. Controls", "Part II", "Item 5. Other"]))
    assert numbered_headings(toc) is None
    assert numbered_headings(PageText(1, "Total 1,200 $ 3.5\n3 Amounts are in millions of dollars 2024")) == []


def test_a_pdf_without_numbered_headings_is_sectioned_by_its_bold_lines() -> None:
    """A report that numbers nothing: its lines set in bold situate the rows and sentences under them; a table's
    bold column heads, qualifiers, dates and a bold line on every page do not; nor does regular type. Where the
    document numbers its structure, that structure is its sections, with a financial statement's title under it
    (rag.statements), bold or not; its other bold lines are not."""
    def bold(line: str) -> tuple[str, int, bool]:
        return (line, 11, True)

    statement = [bold("CONSOLIDATED STATEMENTS OF OPERATIONS"), bold("(in millions)"), bold("Three Months Ended"),
                 bold("Adjusted"), bold("Cost"), bold("Fair"), bold("Value"),
                 "Net sales 4,812 4,497", "Gross margin 1,200 1,100"]
    discussion = [bold("Gross Margin"), "Gross margin rose to 24.9 percent on lower freight costs.",
                  bold("Three Months Ended"), "Freight 310 290", bold("June 30, 2024"),
                  "Liquidity", "Cash on hand covers the next twelve months of operations."]
    pages = [[("Zenith Foods Inc.", 22), "Quarterly report"], statement, discussion,
             ["Net income for the period:", bold("Three Months Ended"), "Net income 310 290"]]
    data = text_pdf(pages)
    read = read_document("report.pdf", data).pages
    context = document_context("report.pdf", data, read)
    assert {h.text for h in context.headings} == {"CONSOLIDATED STATEMENTS OF OPERATIONS", "Gross Margin"}
    texts = ["Gross margin 1,200 1,100", "Gross margin rose to 24.9 percent on lower freight costs.",
             "Cash on hand covers the next twelve months of operations."]
    assert chunk_sections(context, read, texts, [2, 3, 3]) == [
        "CONSOLIDATED STATEMENTS OF OPERATIONS", "Gross Margin", "Gross Margin"]

    all_bold = text_pdf([pages[0], [bold("Net sales rose by four percent in the quarter, as freight"),
                                    bold("costs fell and the new lines sold well in every region."),
                                    bold("Margins held at the level of the year before, on lower"),
                                    bold("input prices.")]])
    assert document_context("bold.pdf", all_bold, read_document("bold.pdf", all_bold).pages).headings == ()

    numbered = text_pdf([pages[0], [bold("Item 1. Financial Statements"), *statement], pages[2]])
    context = document_context("filing.pdf", numbered, read_document("filing.pdf", numbered).pages)
    assert [h.text for h in context.headings] == ["Item 1. Financial Statements",
                                                  "CONSOLIDATED STATEMENTS OF OPERATIONS"]


def test_html_title_and_headings() -> None:
    html = (b"<html><head><title>Kestrel Cycles warranty</title></head><body><h1>Warranty</h1><p>Frames are covered "
            b"for life.</p><h2>Making a claim</h2><p>Write to the service desk with the receipt.</p></body></html>")
    pages = read_document("w.html", html).pages
    context = document_context("w.html", html, pages)
    assert context.identity.title == "Kestrel Cycles warranty"
    texts = ["Frames are covered for life.", "Write to the service desk with the receipt."]
    assert chunk_sections(context, pages, texts, [None, None]) == ["Warranty", "Warranty > Making a claim"]


def test_docx_title_and_heading_styles() -> None:
    import docx

    document = docx.Document()
    document.core_properties.title = "Depot safety rules"
    document.add_heading("Forklifts", level=1)
    document.add_paragraph("Only trained staff drive forklifts.")
    document.add_heading("Charging", level=2)
    document.add_paragraph("Batteries charge in the ventilated bay.")
    buffer = io.BytesIO()
    document.save(buffer)
    data = buffer.getvalue()
    pages = read_document("depot.docx", data).pages
    context = document_context("depot.docx", data, pages)
    assert context.identity.title == "Depot safety rules"
    texts = ["Only trained staff drive forklifts.", "Batteries charge in the ventilated bay."]
    assert chunk_sections(context, pages, texts, [None, None]) == ["Forklifts", "Forklifts > Charging"]


def test_markdown_first_heading_and_sections_outside_code() -> None:
    text = "# Pump guide\n\nIntro.\n\n## Install\n\nBolt it down.\n\n```\n# not a heading\n```\n\n## Service\n\nOil it.\n"
    pages = read_document("guide.md", text.encode()).pages
    context = document_context("guide.md", text.encode(), pages)
    assert context.identity.title == "Pump guide"
    assert chunk_sections(context, pages, ["Bolt it down.", "Oil it."], [None, None]) == \
        ["Pump guide > Install", "Pump guide > Service"]
    # the title is not said twice in what the chunk carries
    assert [meta.get("section") for meta in chunk_metadata(context, ["Pump guide > Install", "Pump guide"], 200)] == \
        ["Install", None]


def test_file_words_and_a_bounded_context_line() -> None:
    assert file_words("reports/2023 Q3 AMZN.pdf") == "2023 Q3 AMZN" and file_words("q3_report-final.md") == \
        "q3 report final"
    parts = ("Zenith Foods Inc.", "For the quarter ended March 31, 2024", "2024 Q1 ZEN")
    line = context_line(parts, "Part I > Item 2. " + "x" * 300, 120)
    assert len(line) <= 120 and line.startswith("Zenith Foods Inc. · For the quarter ended March 31, 2024 · 2024 Q1 ZEN — …")
    assert line.endswith("x")  # the section's innermost end kept
    # whole parts only: the identity is never cut inside a part
    assert context_line(parts, "Item 2", 60) == "Zenith Foods Inc. · 2024 Q1 ZEN — Item 2"


@pytest.fixture
def three_companies(settings):
    results = Ingestor(settings).ingest([SourceFile(name, data=filing(*facts)) for name, facts in COMPANIES.items()])
    assert [r.status for r in results] == ["ok"] * 3
    return settings


@pytest.mark.parametrize("name", list(COMPANIES))
def test_the_question_naming_a_company_gets_its_chunk_first(three_companies, name) -> None:
    from rag.pipeline import RagPipeline

    company = COMPANIES[name][0]
    question = f"What were {company.split()[0]} {company.split()[1]}'s total net sales in the first quarter of 2024?"
    result = RagPipeline(three_companies).ask(question)
    top = result.chunks[0]
    assert top.source == name and COMPANIES[name][1] in top.text
    assert top.doc_title == company and "Item 2" in (top.section or "")
    # the answer quotes the chunk, never its context: no page but the cover names the company
    assert company.split()[0] not in result.answer and company.split()[0] not in top.text
    assert result.answer_spans and all(
        span.end <= len(result.chunks[span.chunk - 1].text) for span in result.answer_spans)


def test_embedding_bm25_and_the_reranker_read_the_context(three_companies, monkeypatch) -> None:
    from rag.chunk_context import with_context
    from rag.embedders.models import configured_embedder
    from rag.lexical import lexical_search
    from rag.pipeline import RagPipeline
    from rag.store import KnowledgeBase

    kb = KnowledgeBase(three_companies)
    rows = kb.chunks.get(where={"page": 3}, include=["documents", "metadatas", "embeddings"])
    assert rows["ids"] and all("Borealis" not in text for text in rows["documents"])
    embedder = configured_embedder(three_companies, kb.embed_model)
    for text, meta, stored in zip(rows["documents"], rows["metadatas"], rows["embeddings"], strict=True):
        assert meta["context"].startswith(meta["doc_title"])
        read = np.asarray(embedder.embed_documents([with_context(meta["context"], text)])[0])
        alone = np.asarray(embedder.embed_documents([text])[0])
        assert float(np.dot(read, stored)) > 0.999 > float(np.dot(alone, stored))
    # BM25 finds Borealis's inventory page by the name its text never says
    hits = lexical_search(kb, three_companies.data_dir, "Borealis inventories", 3)
    assert hits[0].source == "filing-b.pdf" and hits[0].page == 3 and "Borealis" not in hits[0].text

    pipeline = RagPipeline(three_companies)
    reranker = pipeline.reranker_for()
    read_by_reranker: list[str] = []
    logits = reranker.logits

    def recording(query, texts):  # the real reranker, its passages noted
        read_by_reranker.extend(texts)
        return logits(query, texts)

    monkeypatch.setattr(reranker, "logits", recording)
    result = pipeline.ask("Borealis inventories", generate=False)
    assert result.reranked and read_by_reranker
    contexts = {c.chunk_id: c for c in kb.get_chunks([c.chunk_id for c in result.candidates])}
    first = contexts[result.candidates[0].chunk_id]
    assert read_by_reranker[0] == with_context(first.context, first.text) != first.text


def test_reindex_gives_an_old_collection_its_context(settings, tmp_path) -> None:
    from rag.cli import main
    from rag.lexical import lexical_search
    from rag.store import KnowledgeBase

    old = settings.model_copy(update={"chunk_context": "off"})  # as ingested before chunks knew their document
    files = [SourceFile(name, data=filing(*facts)) for name, facts in COMPANIES.items()]
    files.append(SourceFile("notes.html", data=b"<html><head><title>Site notes</title></head><body><h1>Notes</h1>"
                            b"<p>The gate opens at seven.</p></body></html>"))
    assert all(r.status == "ok" for r in Ingestor(old).ingest(files))
    kb = KnowledgeBase(settings)
    before = {c.chunk_id: c.text for c in kb.committed_chunks()}
    assert not any(c.context for c in kb.committed_chunks())
    assert main(["reindex", "--data-dir", str(settings.data_dir)]) == 0
    kb = KnowledgeBase(settings)
    after = {c.chunk_id: c for c in kb.committed_chunks()}
    assert {k: c.text for k, c in after.items()} == before  # same chunks, same texts: nothing chunked again
    page3 = next(c for c in after.values() if c.source == "filing-c.pdf" and c.page == 3)
    assert page3.doc_title == "Calypso Airlines Ltd." and "Note 3 - Inventories" in page3.section
    hits = lexical_search(kb, settings.data_dir, "Calypso inventories", 3)
    assert hits[0].chunk_id == page3.chunk_id
    notes = next(c for c in after.values() if c.source == "notes.html")
    assert notes.context  # from its name and text: HTML keeps no headings in the store


def test_reindex_names_the_documents_to_ingest_again(settings, capsys) -> None:
    from rag.cli import main

    old = settings.model_copy(update={"chunk_context": "off"})
    html = b"<html><head><title>Site notes</title></head><body><h1>Notes</h1><p>The gate opens at seven.</p></body></html>"
    assert Ingestor(old).ingest([SourceFile("notes.html", data=html)])[0].status == "ok"
    assert main(["reindex", "--context", "--data-dir", str(settings.data_dir)]) == 0
    out = capsys.readouterr().out
    assert "ingest again for its title and sections: notes.html" in out


def test_an_llm_writes_each_chunk_its_context_once(settings, openai_server) -> None:
    from rag.store import KnowledgeBase

    openai_server.answer = "This chunk is from the pump guide's section on servicing the XR-17 pump."
    llm = settings.model_copy(update={"chunk_context": "llm", "openai_base_url": openai_server.url,
                                      "llm_model": "test-model"})
    guide = b"# Pump guide\n\n## Service\n\nOil the XR-17 every 400 hours.\n\n## Storage\n\nKeep it dry in winter.\n"
    assert Ingestor(llm).ingest([SourceFile("guide.md", data=guide)])[0].status == "ok"
    kb = KnowledgeBase(llm)
    chunks = list(kb.committed_chunks())
    assert chunks and all(c.context == openai_server.answer and c.doc_title == "Pump guide" for c in chunks)
    asked = [r for r in openai_server.requests if r.get("model") == "test-model"]
    assert len(asked) == len(chunks)  # one call per chunk, the whole document and the chunk in it
    prompt = asked[0]["messages"][-1]["content"]
    assert "Keep it dry in winter." in prompt and "<chunk>" in prompt
    # the same document again, under another name: every context comes from the cache
    assert Ingestor(llm).ingest([SourceFile("copy.md", data=guide)])[0].status == "ok"
    assert len([r for r in openai_server.requests if r.get("model") == "test-model"]) == len(chunks)
    # an LLM that fails leaves the identity line: the ingest never fails for it
    failing = llm.model_copy(update={"llm_model": "fail-500", "llm_max_retries": 0})
    assert Ingestor(failing).ingest([SourceFile("other.md", data=b"# Other\n\nA different text.\n")])[0].status == "ok"
    other = [c for c in KnowledgeBase(llm).committed_chunks() if c.source == "other.md"]
    assert other and other[0].context == "Other"
