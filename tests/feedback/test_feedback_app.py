"""The feedback loop in the app, through AppTest on a real store and the real models: marks under an answer on
the Ask page land in the store, the Feedback page lists, deletes and exports them, shows a finished training's
comparison, switches the collection to the fine-tune and back, and a read-only key's session saves no mark."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from api.keys import KeyStore
from rag.feedback import FeedbackStore, collection_reranker
from rag.settings import Settings
from tests.feedback.conftest import QUESTIONS
from tests.helpers import REPO

APP = str(REPO / "app.py")
TIMEOUT = 240


def run(target) -> AppTest:
    at = target.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def app_on(monkeypatch: pytest.MonkeyPatch):
    def point(data_dir: Path, **env: str) -> AppTest:
        monkeypatch.setenv("RAG_DATA_DIR", str(data_dir))
        monkeypatch.setenv("RAG_SAMPLE_DIR", "")  # the store holds the samples already
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return AppTest.from_file(APP, default_timeout=TIMEOUT)

    return point


def ask(at: AppTest, question: str) -> AppTest:
    return run(at.chat_input[0].set_value(question))


def test_marks_on_the_ask_page_are_stored_listed_exported_and_deleted(store_copy: Path, app_on) -> None:
    at = ask(run(app_on(store_copy)), QUESTIONS[0])
    chunk_controls = [c for c in at.segmented_control if c.label.startswith("Chunk ")]
    assert len(chunk_controls) == 5
    run(chunk_controls[0].set_value("answers it"))
    # the panel stays open after the first mark, for the next one
    assert next(e for e in at.expander if e.label == "Mark this answer").proto.expanded
    run(next(c for c in at.segmented_control if c.label.startswith("Chunk 2")).set_value("does not"))
    run(next(c for c in at.segmented_control if c.label == "The answer").set_value("good"))
    marks = FeedbackStore(Settings(data_dir=store_copy)).marks("default")
    assert sorted(m.label for m in marks) == ["good", "irrelevant", "relevant"]
    assert all(m.question == QUESTIONS[0] and m.by == "app" for m in marks)
    run(next(c for c in at.segmented_control if c.label.startswith("Chunk 2")).set_value(None))  # taken back
    assert len(FeedbackStore(Settings(data_dir=store_copy)).marks("default")) == 2

    run(at.switch_page("app_pages/feedback.py"))
    table = at.dataframe[0].value
    assert sorted(table["label"]) == ["good", "relevant"] and set(table["question"]) == {QUESTIONS[0]}
    # a chunk mark names the chunk as a person knows it: source, page and first words, not its id
    chunk = at.session_state["chat"][0]["result"].chunks[0]
    where = f"{chunk.source}{f', p. {chunk.page}' if chunk.page is not None else ''}: "
    assert table.loc[table["mark"] == "chunk", "chunk"].tolist() == [where + " ".join(chunk.text.split()[:10]) + "…"]
    assert any(t.value.endswith("2 marks · 1 question with a chunk marked as answering it") for t in at.text)
    assert [b.label for b in at.download_button] == ["Export the questions file", "Export training pairs"]
    train = next(b for b in at.button if b.label == "Train on this collection's feedback")
    assert train.disabled and any("30 marked questions" in t.value for t in at.text)  # the minimum, and why
    chosen = next(m for m in at.multiselect if m.label == "Marks to delete")
    run(chosen.set_value([next(m.mark_id for m in marks if m.kind == "answer")]))
    run(next(b for b in at.button if b.label == "Delete the chosen marks").click())
    assert [m.label for m in FeedbackStore(Settings(data_dir=store_copy)).marks("default")] == ["relevant"]


def test_the_feedback_page_compares_and_switches_and_switches_back(trained, app_on) -> None:
    settings, job = trained
    at = run(app_on(settings.data_dir, RAG_FEEDBACK_MIN_QUESTIONS="4"))
    run(at.switch_page("app_pages/feedback.py"))
    assert any(t.value == f"Job {job.name}: done" for t in at.text)
    comparison = next(d.value for d in at.dataframe if "fine-tuned" in d.value.columns)
    assert list(comparison["set"]) == ["held-out feedback", "dev set dev"]
    assert not next(b for b in at.button if b.label == "Train on this collection's feedback").disabled
    switch = next(b for b in at.button if b.label.startswith("Switch to the fine-tuned reranker"))
    run(switch.click())
    folder = collection_reranker(Settings(data_dir=settings.data_dir), "default")
    assert folder and Path(folder).parent.name == "rerankers"
    assert any(t.value == f"In use for this collection: {folder}" for t in at.text)
    run(next(b for b in at.button if b.label.startswith("Switch back to")).click())
    assert collection_reranker(Settings(data_dir=settings.data_dir), "default") is None
    assert not [b for b in at.button if b.label.startswith("Switch back to")]


def test_a_read_only_session_saves_no_mark(store_copy: Path, app_on) -> None:
    _, reader = KeyStore(Settings(data_dir=store_copy)).create("reader", collection="default", scope="read")
    at = run(app_on(store_copy))
    next(t for t in at.text_input if t.label == "API key").set_value(reader)
    at = ask(run(next(b for b in at.button if b.label == "Sign in").click()), QUESTIONS[0])
    assert not [c for c in at.segmented_control if c.label.startswith("Chunk ")]
    assert any("Marks cannot be saved here" in c.value and "read scope" in c.value for c in at.caption)
    run(at.switch_page("app_pages/feedback.py"))
    assert any(t.value.startswith("Read only:") for t in at.text)
    assert next(b for b in at.button if b.label == "Train on this collection's feedback").disabled
