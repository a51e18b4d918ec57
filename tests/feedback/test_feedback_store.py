"""Marks in the store: added, replaced, listed, deleted, bounded, exported; the collection's reranker switched
and switched back, and the pipeline answering with it. A real embedded store with the sample documents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation.questions import load_questions
from evaluation.run import evaluate_questions
from rag.feedback import FEEDBACK_COLLECTION, FeedbackError, FeedbackStore, collection_reranker
from rag.pipeline import RagPipeline
from rag.settings import Settings
from rag.store import KnowledgeBase, ReservedCollectionError, collection_names
from tests.feedback.conftest import QUESTIONS, mark_questions
from training.data import load_pairs_jsonl


def test_a_mark_is_stored_replaced_listed_and_deleted(store_copy: Path) -> None:
    settings = Settings(data_dir=store_copy)
    store = FeedbackStore(settings)
    result = RagPipeline(settings).ask(QUESTIONS[0], generate=False)
    chunk = result.chunks[0].chunk_id
    first = store.add("default", QUESTIONS[0], chunk_id=chunk, label="irrelevant", reranker=result.reranker)
    again = store.add("default", QUESTIONS[0], chunk_id=chunk, label="relevant", reranker=result.reranker)
    answer = store.add("default", QUESTIONS[0], answer="good", chunk_ids=[c.chunk_id for c in result.chunks])
    assert first.mark_id == again.mark_id  # the same chunk of the same question: one mark, the latest label
    marks = store.marks("default")
    assert {m.mark_id for m in marks} == {again.mark_id, answer.mark_id}
    chunk_mark = next(m for m in marks if m.kind == "chunk")
    assert (chunk_mark.label, chunk_mark.chunk_ids, chunk_mark.reranker) == ("relevant", (chunk,), result.reranker)
    assert chunk_mark.question == QUESTIONS[0] and chunk_mark.created_at and chunk_mark.by == "app"
    assert next(m for m in marks if m.kind == "answer").chunk_ids == tuple(c.chunk_id for c in result.chunks)
    assert store.delete("other", [again.mark_id]) == 0  # another collection's delete leaves it alone
    assert store.delete("default", [again.mark_id]) == 1
    assert [m.kind for m in store.marks("default")] == ["answer"]


def test_marks_are_bounded_before_they_are_stored(store_copy: Path) -> None:
    settings = Settings(data_dir=store_copy, feedback_max_marks=2, max_question_chars=50)
    store = FeedbackStore(settings)
    chunk = RagPipeline(settings).ask(QUESTIONS[0], generate=False).chunks[0].chunk_id
    with pytest.raises(FeedbackError, match="no chunk"):
        store.add("default", "q?", chunk_id="not-a-chunk", label="relevant")
    with pytest.raises(FeedbackError, match="label"):
        store.add("default", "q?", chunk_id=chunk, label="maybe")
    with pytest.raises(FeedbackError, match="not both"):
        store.add("default", "q?", chunk_id=chunk, label="relevant", answer="good")
    with pytest.raises(FeedbackError, match="limit is 50"):
        store.add("default", "x" * 51, chunk_id=chunk, label="relevant")
    with pytest.raises(FeedbackError, match="empty"):
        store.add("default", "\x00 \n", chunk_id=chunk, label="relevant")
    with pytest.raises(FeedbackError, match="at most"):
        store.add("default", "q?", answer="good", chunk_ids=[chunk] * 1 + [f"c{i}" for i in range(60)])
    with pytest.raises(ReservedCollectionError):
        store.add(FEEDBACK_COLLECTION, "q?", chunk_id=chunk, label="relevant")
    store.add("default", "one?", chunk_id=chunk, label="relevant")
    store.add("default", "two?", chunk_id=chunk, label="relevant")
    store.add("default", "two?", chunk_id=chunk, label="irrelevant")  # a replacement is no new mark
    with pytest.raises(FeedbackError, match="limit"):
        store.add("default", "three?", chunk_id=chunk, label="relevant")


def test_the_feedback_collection_is_the_stores_own(store_copy: Path) -> None:
    settings = Settings(data_dir=store_copy)
    mark_questions(settings, QUESTIONS[:1])
    assert FEEDBACK_COLLECTION not in collection_names(settings)
    with pytest.raises(ReservedCollectionError):
        KnowledgeBase(settings, FEEDBACK_COLLECTION)


def test_exports_read_as_eval_questions_and_training_pairs(store_copy: Path, tmp_path: Path) -> None:
    settings = Settings(data_dir=store_copy)
    mark_questions(settings, QUESTIONS[:3])
    store = FeedbackStore(settings)
    questions = tmp_path / "questions.jsonl"
    questions.write_text(store.questions_jsonl("default"))
    rows = load_questions(questions)
    assert sorted(r["question"] for r in rows) == sorted(QUESTIONS[:3])
    report = evaluate_questions(settings, questions, collection="default", rerankers=[], first_stages=["hybrid"])
    assert report.queries == 3 and report.runs[0].hit_rate == 1.0  # the marked chunk was the first one shown
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(store.pairs_jsonl("default"))
    loaded = load_pairs_jsonl(pairs)
    assert len(loaded) == 3 and all(len(p["negatives"]) == 1 and p["positive"] for p in loaded)
    # each pair reads as the reranker reads the chunk: its context line, then its text
    marked = json.loads(store.questions_jsonl("default").splitlines()[0])["expected_chunk_id"]  # a list of ids
    chunk = KnowledgeBase(settings, "default").get_chunks(marked)[0]
    assert chunk.context and chunk.read_text in {p["positive"] for p in loaded}
    assert json.loads(store.questions_jsonl("default").splitlines()[0])["expected_chunk_id"]


def test_a_collection_answers_with_the_reranker_it_was_switched_to_and_back(store_copy: Path,
                                                                            plumbing_reranker: str) -> None:
    settings = Settings(data_dir=store_copy)
    store, pipeline = FeedbackStore(settings), RagPipeline(settings)
    default = pipeline.ask(QUESTIONS[0], generate=False).reranker
    store.switch("default", plumbing_reranker, previous=None)
    assert collection_reranker(settings, "default") == plumbing_reranker
    assert pipeline.ask(QUESTIONS[0], generate=False).reranker == plumbing_reranker
    explicit = Settings(data_dir=store_copy, reranker=default)  # named explicitly: it wins over the choice
    assert RagPipeline(explicit).ask(QUESTIONS[0], generate=False).reranker == default
    assert store.switch_back("default") is None
    assert store.choice("default") is None
    assert pipeline.ask(QUESTIONS[0], generate=False).reranker == default


def test_a_folder_that_has_gone_is_no_choice(store_copy: Path, tmp_path: Path) -> None:
    settings = Settings(data_dir=store_copy)
    FeedbackStore(settings).switch("default", str(tmp_path / "cleaned-away"), previous=None)
    assert collection_reranker(settings, "default") is None
