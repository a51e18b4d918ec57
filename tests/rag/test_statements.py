"""A question that names a financial statement reads that statement's chunks first (issue 33, rag.statements)."""

from __future__ import annotations

import pytest

from ingest.identity import chunk_sections, document_context
from ingest.loaders import read_document
from ingest.pipeline import Ingestor, SourceFile
from rag.pipeline import RagPipeline
from rag.settings import Settings
from rag.statements import line_item_statements, named_statements, statement_kind, statement_titles
from tests.helpers import SEC_PDFS, text_pdf

CASH_FLOWS = "CONDENSED CONSOLIDATED STATEMENTS OF CASH FLOWS (Unaudited)"
BALANCE = "Condensed Consolidated Balance Sheets"


def filing(company: str = "Zenith Foods Inc.", spent: str = "(310) (287)") -> bytes:
    """A quarterly filing whose discussion and notes speak of property and equipment in sentences, while the
    figures the questions ask for stand in the statements' rows, under titles only."""
    return text_pdf([
        [(company, 22), ("FORM 10-Q", 16), "For the quarterly period ended March 31, 2024"],
        ["Item 2. Management's Discussion and Analysis",
         "As the cash flow statement shows, we spent more on property and equipment this quarter than ever.",
         "Property and equipment purchases will grow next year as we open distribution centers.",
         "The balance sheet shows property and equipment grew with the new stores."],
        ["Note 5 - Property and Equipment",
         "Property and equipment are stated at cost less accumulated depreciation.",
         "Depreciation of property and equipment is recorded on a straight-line basis over useful lives."],
        ["Item 1. Financial Statements", company, CASH_FLOWS, "(In millions)",
         "Three Months Ended March 31, 2024 2023", "Net income 512 470", "Depreciation and amortization 120 104",
         "Net cash provided by operating activities 1,204 1,050", f"Purchases of property and equipment {spent}",
         "Net cash used in investing activities (402) (355)"],
        [company, BALANCE, "(In millions)", "March 31, 2024 December 31, 2023",
         "Cash and cash equivalents 2,110 1,980", "Property and equipment, net 4,876 4,702",
         "Total assets 12,004 11,620", "Total current liabilities 3,311 3,150"],
    ])


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Settings:
    settings = Settings(data_dir=tmp_path_factory.mktemp("statements") / "store")
    [result] = Ingestor(settings).ingest([SourceFile("zenith-q1.pdf", data=filing())])
    assert result.status == "ok"
    return settings


def test_statement_titles_and_the_questions_that_name_them() -> None:
    assert statement_kind(CASH_FLOWS) == "cash flows"
    assert statement_kind("CONSOLIDATED STATEMENTS OF OPERATIONS (In millions, except per share amounts)") == "income"
    assert statement_kind("Consolidated Statements of Comprehensive Income") == "comprehensive income"
    assert statement_kind("Consolidated Statements of Changes in Shareholders' Equity") == "equity"
    assert statement_kind("合并现金流量表（续）") == "cash flows"
    assert statement_kind("CASH FLOWS STATEMENTS") == "cash flows"  # Microsoft's titles
    assert statement_kind("C ONSOLIDATED B ALANCE S HEETS") == "balance sheet"  # small capitals as a PDF gives them
    assert statement_kind("Consolidated Statements of Operations for the Three and Nine Months Ended September 30, "
                          "2023 and 2022 (Unaudited)") == "income"
    # a sentence, the notes' heading and an index entry with its page are no titles
    for line in ("The balance sheet remained strong.", "Notes to Condensed Consolidated Financial Statements",
                 "Consolidated Statements of Cash Flows 45"):
        assert statement_kind(line) is None
    # an index lists the statements, page numbers between: none of its entries is a statement's title
    assert statement_titles("Index\nConsolidated Statements of Operations\n3\nConsolidated Balance Sheets\n4\n") == []
    index = ("Index to Consolidated Financial Statements\nConsolidated Statements of Operations for the years ended "
             "December 31, 2019, 2018 and 2017\nReport of the auditors\nConsolidated Balance Sheets as of December 31, "
             "2019 and 2018\nNotes\nNotes\nConsolidated Statements of Cash Flows\n")
    assert statement_titles(index) == []  # a page with three kinds of title lists them
    assert statement_kind("Consolidated Statements of Cash Flows for the years ended June 30, 2023 and 2022 45") is None
    assert statement_titles(f"Zenith Foods Inc.\n{BALANCE}\nCash 2,110\n") == [(18, BALANCE)]
    assert statement_titles("Zenith Foods Inc.\nCONSOLIDATED STATEMENTS OF\nCASH FLOWS\nNet income 512 470\n") == [
        (18, "CONSOLIDATED STATEMENTS OF CASH FLOWS")]  # a title wrapped after its "of"

    assert named_statements("What did Apple spend on equipment, per the cash flow statement?") == {"cash flows"}
    assert named_statements("Relying on the P&L and the statement of financial position, what is the margin?") == {
        "income", "balance sheet"}
    assert named_statements("Answer from the statement of comprehensive income.") == {"comprehensive income"}
    assert named_statements("根据资产负债表，总资产是多少？") == {"balance sheet"}
    assert named_statements("How did the company's cash flow change?") == frozenset()


def test_an_html_filing_sections_its_statement_and_not_its_index() -> None:
    """A whole HTML document is one text: its index of the statements lists them two lines apart (page numbers
    between) and titles nothing; the statement's own title is the section of its rows, under the Item."""
    html = (b"<html><body><h2>Item 8. Financial Statements</h2><p>Index</p><table>"
            b"<tr><td>Consolidated Statements of Operations</td><td>45</td></tr>"
            b"<tr><td>Consolidated Balance Sheets</td><td>46</td></tr>"
            b"<tr><td>Consolidated Statements of Cash Flows</td><td>47</td></tr></table>"
            b"<p>We have audited the accompanying consolidated balance sheets.</p><p><b>ZENITH FOODS INC.</b></p>"
            b"<p><b>CONSOLIDATED STATEMENTS OF CASH FLOWS</b></p><p>(In millions)</p><table><tr>"
            b"<td>Purchases of property and equipment</td><td>(310)</td><td>(287)</td></tr></table>"
            b"<h3>Notes to Consolidated Financial Statements</h3><p>Note 1. The statements follow GAAP.</p></body></html>")
    pages = read_document("zenith-10k.html", html).pages
    context = document_context("zenith-10k.html", html, pages)
    texts = ["We have audited the accompanying consolidated balance sheets.", "Purchases of property and equipment",
             "Note 1. The statements follow GAAP."]
    assert chunk_sections(context, pages, texts, [None] * 3) == [
        "Item 8. Financial Statements", "Item 8. Financial Statements > CONSOLIDATED STATEMENTS OF CASH FLOWS",
        "Item 8. Financial Statements > Notes to Consolidated Financial Statements"]


@pytest.mark.parametrize(("question", "kind", "page", "figure"), [
    ("What did Zenith spend on property and equipment in the quarter, per the cash flow statement?",
     "cash flows", 4, "(310)"),
    ("What was Zenith's property and equipment, net? Base the answer on the balance sheet.",
     "balance sheet", 5, "4,876"),
])
def test_a_question_naming_a_statement_reads_its_rows_first(store, question, kind, page, figure) -> None:
    result = RagPipeline(store).ask(question, top_k=2, top_n=2)
    assert result.named_statements == [kind]
    first = result.chunks[0]
    assert (first.page, first.in_named_statement) == (page, True) and figure in first.text
    title = CASH_FLOWS if page == 4 else BALANCE
    assert first.section.endswith(title) and title not in first.context  # the rows' section; retrieval reads it not
    assert [c.in_named_statement for c in result.candidates].count(True) == 1  # one page: one chunk of it
    assert result.public_json()["named_statements"] == [kind]
    assert result.statements_read_first() == f"Read first the financial statements the question names: {kind}"
    assert figure in result.answer  # the extractive answer quotes the statement's row


def test_without_the_statement_named_the_sentences_lead(store) -> None:
    """The same question without naming a statement, or with the routing off, is ranked by retrieval and the
    reranker alone: the discussion's sentence about property and equipment comes before the statement's row."""
    asked = "What did Zenith spend on property and equipment in the quarter"
    plain = RagPipeline(store).ask(asked + "?", generate=False)
    off = RagPipeline(store.model_copy(update={"route_statements": False})).ask(
        asked + ", per the cash flow statement?", generate=False)
    for result in (plain, off):
        assert result.named_statements == [] and not any(c.in_named_statement for c in result.candidates)
        assert result.statements_read_first() is None
        assert result.chunks[0].page == 2


def test_the_line_items_a_question_asks_for_tell_their_statement() -> None:
    assert line_item_statements("What were Apple's total assets at the end of Q3 2023?") == {"balance sheet"}
    assert line_item_statements("What is the FY2019 capital expenditure amount for 3M?") == {"cash flows"}
    assert line_item_statements("How did NVIDIA's operating expenses compare to its inventories?") == {
        "income", "balance sheet"}
    assert line_item_statements("公司2023年的净利润是多少？") == {"income"}
    # words as common in the notes and the discussion as in a statement ask for no line item
    for question in ("What were the iPhone's sales in Q3?", "What risks does Apple list?", "Who audits NVIDIA?",
                     "How high is the staff turnover?"):
        assert line_item_statements(question) == frozenset()


def test_a_question_asking_for_a_line_item_reads_its_statements_best_chunk_first(store) -> None:
    """No statement named, but "purchases of property and equipment" is a cash flow statement's row: its best chunk
    leads, and only that one; the answer quotes the row. With line_item_leads 0 the discussion's sentence leads."""
    asked = "How much did Zenith's purchases of property and equipment come to in the quarter?"
    result = RagPipeline(store).ask(asked, top_k=4, top_n=2)
    assert (result.named_statements, result.line_item_statements) == ([], ["cash flows"])
    first = result.chunks[0]
    assert (first.page, first.in_line_item_statement, first.in_named_statement) == (4, True, False)
    assert [c.in_line_item_statement for c in result.candidates].count(True) == 1
    assert result.statements_read_first() == ("Read first the financial statements that print what the question "
                                              "asks for: cash flows")
    assert result.answer.startswith("Purchases of property and equipment (310)")
    off = RagPipeline(store.model_copy(update={"line_item_leads": 0})).ask(asked, top_k=4, top_n=2)
    assert off.line_item_statements == [] and not any(c.in_line_item_statement for c in off.candidates)
    assert off.chunks[0].page == 2 and off.statements_read_first() is None


def test_a_statement_not_among_the_hits_the_fusion_reads_is_sought_deeper(store, monkeypatch) -> None:
    """Each side reads one hit (the discussion's); the statement's row is found among four times as many and leads
    the candidates, with a retrieval score of 0 (the fusion never read it). Searched no deeper, the discussion leads."""
    import rag.retrieve

    asked = "How much did Zenith's purchases of property and equipment come to in the quarter?"
    shallow = store.model_copy(update={"first_stage_k": 1})
    result = RagPipeline(shallow).ask(asked, top_k=1, top_n=1, generate=False)
    first = result.candidates[0]
    assert (first.page, first.in_line_item_statement, first.retrieval_score) == (4, True, 0.0)
    monkeypatch.setattr(rag.retrieve, "LEAD_REACH", 1)
    assert RagPipeline(shallow).ask(asked, top_k=1, top_n=1, generate=False).candidates[0].page == 2


@pytest.mark.parametrize("asked", ["total assets", "inventories"])
def test_the_answer_quotes_the_row_of_the_line_item_asked_for(asked: str) -> None:
    """The chunk read first for the line item quotes its row; not so a chunk that merely leads retrieval, where the
    discussion's sentence outscores the bare row."""
    from rag.extract import extract_answer
    from rag.rerank import load_reranker
    from rag.types import ChunkHit

    rows = ("Cash and cash equivalents 2,110 1,980\nInventories 1,377 1,204\nTotal current assets 5,010 4,800\n"
            "Total assets 12,004 11,620")
    talk = ("Total assets grew to $12.0 billion at the end of the quarter, as we opened new distribution centers. "
            "Inventories rose with them.")
    question = f"What were Zenith's {asked} at the end of the quarter?"
    row = next(line for line in rows.splitlines() if line.lower().startswith(asked))
    reranker = load_reranker("rerank-minilm-l6")
    for read_first in (True, False):
        chunks = [ChunkHit(chunk_id=f"c{n}", doc_id="d", source="zenith-q1.pdf", text=text, retrieval_rank=n,
                           retrieval_score=1 / n, in_line_item_statement=read_first and n == 1)
                  for n, text in ((1, rows), (2, talk))]
        answer = extract_answer(question, chunks, reranker=reranker).answer
        assert answer.startswith(row + " [1]") is read_first, answer


def test_where_no_document_is_named_only_the_first_hits_statement_leads(tmp_path) -> None:
    """Two companies' filings alike, the naming of documents off: the statement of the company the first stage
    ranks first leads, and the other company's statement stays where retrieval put it."""
    settings = Settings(data_dir=tmp_path / "store", route_max_outside_share=0)
    borealis = filing("Borealis Mining Corp.", "(912) (877)")
    results = Ingestor(settings).ingest([SourceFile("zenith-q1.pdf", data=filing()),
                                         SourceFile("borealis-q1.pdf", data=borealis)])
    assert [r.status for r in results] == ["ok", "ok"]
    for company, source, other in (("Zenith", "zenith-q1.pdf", "borealis-q1.pdf"),
                                   ("Borealis", "borealis-q1.pdf", "zenith-q1.pdf")):
        result = RagPipeline(settings).ask(f"What did {company} spend on property and equipment in the quarter, per "
                                           "the cash flow statement?", generate=False)
        assert result.named_documents is None
        first = result.chunks[0]
        assert (first.source, first.page, first.in_named_statement) == (source, 4, True)
        assert [c.in_named_statement for c in result.candidates if c.source == other] == [False] * 5


def test_reindex_gives_a_collection_ingested_without_context_its_statements(tmp_path) -> None:
    from rag.cli import main

    bare = Settings(data_dir=tmp_path / "store", chunk_context="off")
    [result] = Ingestor(bare).ingest([SourceFile("zenith-q1.pdf", data=filing())])
    assert result.status == "ok"
    asked = "What did Zenith spend on property and equipment in the quarter, per the cash flow statement?"
    before = RagPipeline(Settings(data_dir=bare.data_dir)).ask(asked, generate=False)
    assert before.named_statements == ["cash flows"] and not any(c.in_named_statement for c in before.candidates)

    assert main(["reindex", "--data-dir", str(bare.data_dir), "--context"]) == 0
    after = RagPipeline(Settings(data_dir=bare.data_dir)).ask(asked, generate=False)
    assert (after.chunks[0].page, after.chunks[0].in_named_statement) == (4, True)
    assert after.chunks[0].section.endswith(CASH_FLOWS)


def test_a_filings_statement_answers_with_its_row_not_its_title(tmp_path) -> None:
    """Amazon's 10-Q: the cash flow statement's title and its header of dates read like the answer to "per the
    cash flow statement"; the answer quotes the row with the figure, from the statement's page."""
    settings = Settings(data_dir=tmp_path / "store")
    source = SEC_PDFS / "2023 Q3 AMZN.pdf"
    [result] = Ingestor(settings).ingest([SourceFile(source.name, data=source.read_bytes())])
    assert result.status == "ok"
    result = RagPipeline(settings).ask("What did Amazon spend on property and equipment in Q3 2023, per the cash "
                                       "flow statement?")
    assert result.chunks[0].in_named_statement and result.chunks[0].page == 3
    assert result.answer.startswith("Purchases of property and equipment (")
    lead = result.answer_spans[0]
    assert result.chunks[lead.chunk - 1].page == 3
    # the same filing asked for a line item without naming the balance sheet: its page is read first
    result = RagPipeline(settings).ask("What were Amazon's total assets at the end of Q3 2023?", generate=False)
    assert result.chunks[0].in_line_item_statement and result.chunks[0].page == 6
