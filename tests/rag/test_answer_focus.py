"""Answers that get to the point (issue 24 §2): sentences that follow each other in a chunk share one citation,
so the lead (the text before the first [n]) is the passage the reader sees first; an answer stays within
``ANSWER_MAX_CHARS``, a sentence that would overrun it left for a shorter one within the margin."""

from __future__ import annotations

from rag import extract
from rag.extract import ANSWER_MAX_CHARS, compose_answer, sentences_of
from rag.types import ChunkHit


def _chunk(text: str, rank: int = 1) -> ChunkHit:
    return ChunkHit(chunk_id=f"c{rank}", doc_id=f"d{rank}", source=f"doc{rank}.txt", text=text, retrieval_rank=rank,
                    retrieval_score=1.0 / rank)


TEXT = ("The Panthers line also featured veteran defensive end Jared Allen, a 5-time pro bowler. "
        "Pro Bowl defensive tackle Kawann Short led the team in sacks with 11. "
        "Davis compiled 5½ sacks, four forced fumbles, and four interceptions.")


def test_sentences_that_follow_each_other_share_one_citation() -> None:
    sentences = sentences_of([_chunk(TEXT)])
    answer = compose_answer(sentences, [0, 1, 2], [2.0, 1.8, -3.0]).answer
    assert answer == ("The Panthers line also featured veteran defensive end Jared Allen, a 5-time pro bowler. "
                      "Pro Bowl defensive tackle Kawann Short led the team in sacks with 11. [1]")
    apart = compose_answer(sentences, [0, 1, 2], [2.0, -3.0, 1.8]).answer  # not neighbours: each cited
    assert apart.count("[1]") == 2 and apart.startswith("The Panthers line") and "Kawann" not in apart
    # the best sentence's chosen neighbour before it leads with it, in the chunk's order (it was quoted after)
    context_first = compose_answer(sentences, [0, 1, 2], [1.8, 2.0, -3.0]).answer
    assert context_first.startswith("The Panthers line") and context_first.endswith("with 11. [1]")


def test_an_answer_keeps_to_its_length_and_a_shorter_sentence_takes_the_place_of_a_long_one() -> None:
    long = "The warranty covers " + "the frame, the fork, the wheels and every bolt of the bike, " * 8 + "for life."
    chunks = [_chunk("A full charge of the battery takes 4.5 hours with the standard charger, " * 4 + "at home."),
              _chunk(long, 2), _chunk("The fast charger takes 2.5 hours.", 3)]
    sentences = sentences_of(chunks)
    assert len(sentences) == 3 and len(sentences[1].text) > extract.MAX_SENTENCE_CHARS
    answer = compose_answer(sentences, [0, 1, 2], [2.0, 1.9, 1.5]).answer
    assert answer.startswith("A full charge") and answer.endswith("at home. [1] The fast charger takes 2.5 hours. [3]")
    assert "warranty" not in answer and len(answer) <= ANSWER_MAX_CHARS  # the long one would have overrun it
    long_lead = compose_answer(sentences, [1, 0, 2], [2.0, 1.9, 1.8]).answer  # a long lead, cut at its own limit
    assert long_lead.startswith("The warranty covers") and "… [2]" in long_lead and len(long_lead) <= ANSWER_MAX_CHARS
