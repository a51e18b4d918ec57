"""The Ask page's example questions (app_pages/examples.py) over the sample documents, through the real
pipeline with the default models: the first screen must show what the reranker adds."""

from __future__ import annotations

from pathlib import Path

import pytest

from app_pages.examples import EXAMPLES, Example
from ingest.pipeline import Ingestor
from rag.pipeline import RagPipeline
from rag.settings import Settings
from tests.helpers import SAMPLE


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> RagPipeline:
    """The samples ingested as the app's first start does: default settings, default chunks."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("samples"))
    results = Ingestor(settings).ingest_paths([SAMPLE])
    assert all(r.status == "ok" for r in results), [str(r) for r in results]
    return RagPipeline(settings)


def test_the_examples_show_moves_and_one_rightly_unchanged() -> None:
    assert sum(e.moves for e in EXAMPLES) >= 2 and not all(e.moves for e in EXAMPLES)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.question)
def test_the_reranker_puts_the_answering_chunk_first(pipeline: RagPipeline, example: Example) -> None:
    result = pipeline.ask(example.question)
    assert result.reranked
    answering = [c for c in result.candidates if example.answer_words in " ".join(c.text.split())]
    assert len(answering) == 1, [c.text[:80] for c in result.candidates]
    chunk = answering[0]
    assert chunk.final_rank == 1, (chunk.retrieval_rank, chunk.final_rank)
    if example.moves:  # the first retrieval ranked another chunk first; the reranker moved this one up
        assert chunk.retrieval_rank > 1 and chunk.movement.startswith("▲"), chunk.retrieval_rank
    else:  # it was first already: the reranker rightly left it there
        assert chunk.retrieval_rank == 1 and chunk.movement == "="
    lead = result.answer.split(" [", 1)[0]
    assert example.answer_words in " ".join(lead.split()), result.answer
