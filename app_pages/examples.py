"""The Ask page's example questions about the sample documents (data/sample), each with what it shows.

Chosen so that the first screen shows what the reranker adds: on three of them the first retrieval ranks
another chunk above the one that answers and the reranker puts the answering chunk first; on the fourth the
first retrieval is right already and the reranker rightly leaves it. ``tests/app/test_sample_examples.py``
asks each through the real pipeline and checks exactly that, so a change to the samples or the pipeline
that stops the demo from moving fails there.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    question: str
    shows: str  # the button's tooltip: which first-stage error the question sets up
    answer_words: str  # words of the sentence that answers it (the test finds the answering chunk by them)
    moves: bool  # whether the reranker moves the answering chunk up to first


EXAMPLES = [
    Example("How fast does the bike go with the motor helping?",
            "A paraphrase: the question shares few words with the answer, so the word search (BM25) ranks "
            "another part of the FAQ first; the reranker reads the meaning", "assists up to 25 km/h", True),
    Example("What does E-21 mean?",
            "An exact code: to the embedding and the word search one error code looks much like another, so the "
            "motor codes rank first; the reranker reads the code", "E-21: one cell group is out of balance", True),
    Example("How long do the lights last once the battery is flat?",
            "A distractor that shares the words: the FAQ's 'How long does a battery last?' ranks first; the "
            "reranker finds the passage that answers", "lights keep working for about one more", True),
    Example("How long does the battery take to charge?",
            "The first retrieval is right already: the reranker keeps the answering chunk first",
            "takes 4.5 hours with the standard 4 A charger", False),
]
