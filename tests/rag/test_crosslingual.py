"""Questions in another language than the documents: BM25 across scripts matches nothing real, so the hybrid
fusion weighs it by how much of the question the collection's words cover (Settings.bm25_coverage_full).
Measured on XQuAD by experiments/crosslingual_compare.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.lexical import LexicalIndex, lexical_coverage
from rag.embedders.models import configured_embedder
from rag.pipeline import RagPipeline
from rag.retrieve import retrieve
from rag.settings import Settings
from rag.store import KnowledgeBase
from tests.helpers import ingest_sample_in_small_chunks

TEXTS = ["A full charge of the 500 Wh battery takes 4.5 hours with the standard 4 A charger.",
         "The motor, the battery and the display are covered for two years from the date of delivery.",
         "Every employee has 28 days of paid holiday a year."]


def test_coverage_is_the_share_of_the_questions_words_the_index_holds() -> None:
    index = LexicalIndex.build(["a", "b", "c"], TEXTS)
    assert index.coverage("Is the battery charge covered for two years?") == 1.0
    assert index.coverage("电池充电需要多长时间？") == 0.0  # no CJK term in English text
    assert 0.0 < index.coverage("电池在2年内保修吗？ battery") < 0.2  # a word and a number among many terms
    assert index.coverage("the and of") == 1.0  # stop words only: nothing to judge by


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ingest_sample_in_small_chunks(tmp_path_factory.mktemp("crosslingual-store"))


def test_a_chinese_question_over_english_documents_is_ranked_by_the_dense_side(sample_store: Path) -> None:
    settings = Settings(data_dir=sample_store, chunk_size=64, chunk_overlap=8)
    kb = KnowledgeBase(settings)
    embedder = configured_embedder(settings, kb.embed_model)
    question = "电池充电需要多长时间？"  # how long does the battery take to charge?
    assert lexical_coverage(kb, settings.data_dir, question) < 0.1
    hybrid = retrieve(question, kb, embedder, settings, mode="hybrid", top_k=5).candidates
    dense = retrieve(question, kb, embedder, settings, mode="dense", top_k=5).candidates
    assert [c.chunk.chunk_id for c in hybrid] == [c.chunk.chunk_id for c in dense]
    english = retrieve("How long does the battery take to charge?", kb, embedder, settings, mode="hybrid", top_k=5)
    assert any(c.bm25_rank is not None for c in english.candidates[:3])  # BM25 still counts where it matches


def test_the_warning_fires_when_nothing_was_reranked_and_the_dense_match_is_weak(sample_store: Path) -> None:
    pipeline = RagPipeline(Settings(data_dir=sample_store, chunk_size=64, chunk_overlap=8))
    unanswerable = pipeline.ask("苹果公司截至2023年7月1日的三个月总净销售额是多少？", generate=False)  # Apple's sales
    assert not unanswerable.reranked and unanswerable.low_confidence


@pytest.mark.xfail(strict=True, reason="a Chinese question over English documents has no abstention model of its own: "
                   "the first-stage one warns on 92-94 % of XQuAD's answerable zh-en questions (BENCHMARKS, issue 35); "
                   "fitted with them it warns on xquad/zh's own on-topic questions far less")
def test_an_answerable_chinese_question_over_english_documents_is_not_warned(sample_store: Path) -> None:
    pipeline = RagPipeline(Settings(data_dir=sample_store, chunk_size=64, chunk_overlap=8))
    answerable = pipeline.ask("电池充电需要多长时间？", generate=False)  # the battery's charging time: in the FAQ
    assert not answerable.reranked and not answerable.low_confidence


def test_an_answer_quoted_in_another_language_says_so(sample_store: Path) -> None:
    pipeline = RagPipeline(Settings(data_dir=sample_store, chunk_size=64, chunk_overlap=8))
    assert pipeline.ask("电池充电需要多长时间？").quotes_other_language  # English sentences for a Chinese question
    assert not pipeline.ask("How long does the battery take to charge?").quotes_other_language
