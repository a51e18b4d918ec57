"""Table rows are candidate sentences of their own, quoted with their column header: the extractive answer
quotes the row that answers, not the caption above the table."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.extract import extract_answer, is_table_row, sentence_spans, table_sentences
from rag.types import ChunkHit
from tests.helpers import SEC_PDFS

TABLE = """Note 4 - Deliveries
Bikes delivered by model for the quarters ended March 31, 2026 and March 31, 2025 were as follows (in units):
Quarter Ended
March 31,
2026
March 31,
2025
Kestrel Commute 1,204 1,180
Kestrel Trail 865 790
Kestrel Cargo 311 260
Total bikes delivered 2,380 2,230
Deliveries of the Cargo model grew the most, as its second production line opened in January."""


def _chunk(text: str) -> ChunkHit:
    return ChunkHit(chunk_id="c1", doc_id="d1", source="deliveries.pdf", page=3, text=text, retrieval_rank=1,
                    retrieval_score=1.0)


def test_table_rows_are_told_from_prose() -> None:
    assert is_table_row("Total net sales $ 81,797 $ 82,959 $ 293,787 $ 304,182")
    assert is_table_row("Mutual funds 366 15 (19) 362 — 362 —")
    assert not is_table_row("2026 2025")  # a header line: no row label
    assert not is_table_row("Revenue grew 4% in 2025 and 2026.")
    assert not is_table_row("The frame is covered for ten years.")


def test_each_row_is_a_sentence_with_its_column_header() -> None:
    texts = [text for _, _, text in table_sentences(TABLE, sentence_spans(TABLE))]
    assert "Total bikes delivered 2,380 2,230 (Quarter Ended March 31, 2026 March 31, 2025)" in texts
    assert "Kestrel Trail 865 790 (Quarter Ended March 31, 2026 March 31, 2025)" in texts
    assert texts[-1].startswith("Deliveries of the Cargo model grew")
    for start, end, text in table_sentences(TABLE, sentence_spans(TABLE)):
        assert text.startswith(" ".join(TABLE[start:end].split()))  # each span is where its text sits


def test_a_group_label_over_the_rows_is_not_the_tables_caption() -> None:
    """A statement's "Revenue:" over its rows labels them; the header above it is still the rows' header, while
    a caption that ends in ':' still ends the header."""
    grouped = TABLE.replace("Kestrel Commute", "Bikes:\nKestrel Commute")
    texts = [text for _, _, text in table_sentences(grouped, sentence_spans(grouped))]
    assert "Total bikes delivered 2,380 2,230 (Quarter Ended March 31, 2026 March 31, 2025)" in texts
    captioned = TABLE.replace("March 31, 2025 were as follows (in units):\nQuarter Ended\nMarch 31,\n2026\n"
                              "March 31,\n2025\n", "March 31, 2025 were as follows (in units):\n")
    assert "Total bikes delivered 2,380 2,230" in [text for _, _, text in table_sentences(
        captioned, sentence_spans(captioned))]


def test_the_answer_quotes_the_row() -> None:
    from rag.embedders.models import configured_embedder
    from rag.rerank import load_reranker
    from rag.settings import Settings

    settings = Settings()
    answer = extract_answer("How many bikes were delivered in total in the quarter ended March 31, 2026?",
                            [_chunk(TABLE)], max_sentences=1, embedder=configured_embedder(settings),
                            reranker=load_reranker(settings.reranker))
    assert answer.answer.startswith("Total bikes delivered 2,380")
    span = answer.spans[0]
    assert TABLE[span.start:span.end] == "Total bikes delivered 2,380 2,230"


@pytest.mark.skipif(not (SEC_PDFS / "2023 Q3 AAPL.pdf").is_file(), reason="needs ../shared/datasets")
def test_apples_net_sales_question_quotes_the_total(tmp_path: Path) -> None:
    from ingest.pipeline import Ingestor
    from rag.pipeline import RagPipeline
    from rag.settings import Settings

    settings = Settings(data_dir=tmp_path / "store")
    [result] = Ingestor(settings).ingest_paths([SEC_PDFS / "2023 Q3 AAPL.pdf"])
    assert result.status == "ok" and "1 running line left out of 29 pages" in result.line()
    answer = RagPipeline(settings).ask("What was Apple's total net sales for the three months ended July 1, 2023?")
    assert "81,797" in answer.answer
