"""The extractive answer quotes the document the question names (issue 33): built from the chunks' identities."""

from __future__ import annotations

from rag.chunk_context import asked_documents
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


def test_the_question_naming_a_company_and_period_is_answered_from_that_filing() -> None:
    question = "What were Amazon's total net sales in the third quarter of 2023?"
    assert asked_documents(question, CHUNKS) == {"am"}  # Amazon and 2023: only that filing's identity holds both
    answer = extract_answer(question, CHUNKS)
    assert answer.spans and {CHUNKS[span.chunk - 1].doc_id for span in answer.spans} == {"am"}
    assert answer.answer.startswith("Total net sales were $143,083 million")


def test_a_question_naming_no_document_and_a_single_document_change_nothing() -> None:
    assert asked_documents("What were total net sales in the third quarter?", CHUNKS) is None
    assert asked_documents("What were Amazon's net sales?", CHUNKS[1:2]) is None  # one document: nothing to tell
    # terms every identity holds tell nothing: the order of the chunks stands
    same = [hit(1, "a", "Handbook", "Handbook", "Leave is 25 days a year for every employee of the firm."),
            hit(2, "b", "Handbook", "Handbook", "Sick leave is paid from the first day of an absence.")]
    assert asked_documents("What does the handbook say about leave?", same) is None
