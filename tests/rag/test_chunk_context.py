"""The extractive answer quotes the documents the question names (issue 33; rag.doc_names finds them)."""

from __future__ import annotations

from rag.extract import extract_answer
from rag.types import ChunkHit


def hit(n: int, doc: str, title: str, context: str, text: str) -> ChunkHit:
    return ChunkHit(chunk_id=f"{doc}:{n}", doc_id=doc, source=f"{doc}.pdf", page=n, text=text, doc_title=title,
                    context=context, retrieval_rank=n, retrieval_score=1.0 / n)


CHUNKS = [  # the other company's page first, as a first stage that cannot tell them apart ranks it
    hit(1, "nv", "NVIDIA CORPORATION", "NVIDIA CORPORATION · For the quarterly period ended October 29, 2023",
        "Revenue for the third quarter was $18,120 million, up 206 percent from a year ago."),
    hit(2, "am", "AMAZON.COM, INC.", "AMAZON.COM, INC. · For the quarterly period ended September 30, 2023 — Item 2",
        "Total net sales were $143,083 million in the third quarter, compared with $127,101 million a year ago."),
    hit(3, "am22", "AMAZON.COM, INC.", "AMAZON.COM, INC. · For the quarterly period ended September 30, 2022",
        "Total net sales were $127,101 million in the third quarter, compared with $110,812 million a year ago."),
]


def test_the_answer_quotes_the_named_filing_though_another_ranks_first() -> None:
    question = "What were Amazon's total net sales in the third quarter of 2023?"
    unnamed = extract_answer(question, CHUNKS)
    assert {CHUNKS[span.chunk - 1].doc_id for span in unnamed.spans} == {"am", "am22"}  # 2022's sales quoted too
    answer = extract_answer(question, CHUNKS, named={"am.pdf"})
    assert answer.spans and {CHUNKS[span.chunk - 1].doc_id for span in answer.spans} == {"am"}
    assert answer.answer.startswith("Total net sales were $143,083 million")


def test_named_documents_none_of_the_chunks_hold_leave_the_answer_as_it_was() -> None:
    question = "What were total net sales in the third quarter?"
    for named in (None, set(), {"other.pdf"}):
        assert extract_answer(question, CHUNKS, named=named).answer == extract_answer(question, CHUNKS).answer
