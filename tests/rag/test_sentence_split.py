"""Where the extractive answer's sentences start and end (rag.extract.sentence_spans, answerable) and where the
chunker cuts (ingest.chunking): numbers, abbreviations and list markers never end a sentence, a heading is not
glued to the sentence under it, a sentence that starts mid-way is quoted as a part ("… ")."""

from __future__ import annotations

import pytest

from ingest.chunking import chunk_pages, make_splitter
from ingest.loaders import load_document
from rag.embedders.models import configured_embedder
from rag.extract import Sentence, answerable, compose_answer, sentence_spans
from rag.settings import Settings
from tests.helpers import SEC_PDFS


def sentences(text: str) -> list[str]:
    return [" ".join(text[start:end].split()) for start, end in sentence_spans(text)]


@pytest.mark.parametrize("text, expected", [
    ("Total net sales include $3.3 billion of revenue. It was deferred.",
     ["Total net sales include $3.3 billion of revenue.", "It was deferred."]),
    ("Total net sales include $3.\n3 billion of revenue recognized in the quarter.",  # a line cut the number
     ["Total net sales include $3. 3 billion of revenue recognized in the quarter."]),
    ("Apple Inc. reported sales. The U.S. market grew. See No. 3 for details.",
     ["Apple Inc. reported sales.", "The U.S. market grew.", "See No. 3 for details."]),
    ("Item 2. Management's Discussion and Analysis. Net sales rose.",
     ["Item 2. Management's Discussion and Analysis.", "Net sales rose."]),
    ("See p. 12 and Fig. 3 for the figures. It ends.", ["See p. 12 and Fig. 3 for the figures.", "It ends."]),
    ("The steps:\n1. Open the app and pair the bike over Bluetooth\n2. Install the update and wait",
     ["The steps:", "1. Open the app and pair the bike over Bluetooth", "2. Install the update and wait"]),
    ("internal control over financial reporting that is long enough to wrap; and\n5. The other officer and I "
     "have disclosed it.", ["internal control over financial reporting that is long enough to wrap; and",
                            "5. The other officer and I have disclosed it."]),
    ("iPad\niPad net sales decreased during the third quarter of 2023 compared to the third quarter of 2022.",
     ["iPad", "iPad net sales decreased during the third quarter of 2023 compared to the third quarter of 2022."]),
    ("## Warranty\nThe frame carries a lifetime warranty.", ["## Warranty", "The frame carries a lifetime warranty."]),
    ("Derivatives Designated\nas Accounting Hedges", ["Derivatives Designated as Accounting Hedges"]),
])
def test_sentence_ends(text: str, expected: list[str]) -> None:
    assert sentences(text) == expected


@pytest.mark.parametrize("text, shown", [
    ("and the U.S. federal R&D credit, partially offset by state income taxes.", "… and the U.S."),  # an overlap
    ("hotel stays are capped at £140 a night in London and £95 elsewhere.", "… hotel stays"),
    ("iPad net sales decreased due primarily to lower net sales of iPad Pro.", "iPad net sales"),
    ("AWS segment sales increased 12% compared with the prior year.", "AWS segment"),
])
def test_a_sentence_that_starts_mid_way_is_quoted_as_a_part(text: str, shown: str) -> None:
    """A chunk's overlap can begin mid-sentence; what it quotes may still answer, so it is quoted after "… "."""
    sentence = Sentence(chunk=1, start=0, end=len(text), text=text, index=0)
    assert answerable(sentence)
    assert compose_answer([sentence], [0], [1.0]).answer.startswith(shown)


def test_the_chunker_keeps_a_number_whole_where_it_cuts_a_long_table() -> None:
    """The Q3 2023 Apple 10-Q's net sales table runs into "Total net sales include $3.3 billion …": llama-index's
    default secondary split cut the chunk after "$3." and began the next with "3 billion"."""
    settings = Settings()
    pdf = SEC_PDFS / "2023 Q3 AAPL.pdf"
    splitter = make_splitter(settings, configured_embedder(settings))
    texts, _, _ = chunk_pages(load_document(pdf.name, pdf.read_bytes()), splitter)
    assert any("Total net sales include $3.3 billion" in text for text in texts)
    assert not [text[-40:] for text in texts if text.rstrip().endswith("$3.")]
