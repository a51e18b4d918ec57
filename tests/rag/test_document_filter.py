"""Asking one document or a few: both first-stage sides filtered by the chunk's source, through RagPipeline.ask."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.pipeline import RagPipeline
from rag.settings import Settings
from tests.helpers import ingest_sample_in_small_chunks


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ingest_sample_in_small_chunks(tmp_path_factory.mktemp("filter-store"))


@pytest.mark.parametrize("retrieval", ["hybrid", "dense", "bm25"])
def test_a_question_asked_of_one_document_finds_only_its_chunks(sample_store: Path, retrieval: str) -> None:
    pipeline = RagPipeline(Settings(data_dir=sample_store, chunk_size=64, chunk_overlap=8, reranker="none"))
    whole = pipeline.ask("How long is the battery covered?", retrieval=retrieval, generate=False)
    assert {c.source for c in whole.candidates} - {"warranty.html"}  # the question matches other files too
    one = pipeline.ask("How long is the battery covered?", retrieval=retrieval, generate=False,
                       sources=["warranty.html"])
    assert one.candidates and {c.source for c in one.candidates} == {"warranty.html"}
    assert one.sources == ["warranty.html"] and whole.sources is None
    assert any("covered for two years" in c.text for c in one.chunks)


def test_a_few_documents_and_a_follow_up_keep_the_filter(sample_store: Path) -> None:
    pipeline = RagPipeline(Settings(data_dir=sample_store, chunk_size=64, chunk_overlap=8, reranker="none"))
    few = ["employee-handbook.md", "product-faq.txt"]
    first = pipeline.ask("How long does the battery take to charge?", sources=few)
    second = pipeline.ask("And the warranty?", sources=few, history=[first])
    assert second.context_query and {c.source for c in second.candidates} <= set(few)
    assert pipeline.ask("warranty", sources=["no-such-file.pdf"], generate=False).candidates == []
