"""Issue 24 on the pages: the cited PDF page opens as an image beside the answer; the Library's "Waiting…"
line only while another ingest holds the store; the Evaluate page's progress reads "run i of n, question j of
m", its run names are explained and "rerank p50 ms" never says None; evaluation's collections are never
listed."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "app.py")


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plumbing_reranker: str) -> Path:
    store = tmp_path / "store"
    monkeypatch.setenv("RAG_DATA_DIR", str(store))
    monkeypatch.setenv("RAG_RERANKER", plumbing_reranker)
    return store


def test_a_cited_pdf_page_opens_as_an_image(data_dir: Path) -> None:
    at = AppTest.from_file(APP, default_timeout=180).run()
    at.chat_input[0].set_value("How long do I have to return a bike for a refund?").run()
    assert not at.exception
    result = at.session_state["chat"][-1]["result"]
    cited_pdf = [n for n, c in enumerate(result.chunks, 1) if c.source.endswith(".pdf") and f"[{n}]" in result.answer]
    assert cited_pdf, result.answer  # the returns guide is a PDF
    buttons = [b for b in at.button if b.key and b.key.startswith("cited-page-0-")]
    assert [int(b.key.rsplit("-", 1)[1]) for b in buttons] == cited_pdf
    assert buttons[0].label.replace("\\", "").startswith(f"[{cited_pdf[0]}] returns-and-service.pdf, p. ")
    buttons[0].click().run()
    assert not at.exception
    assert len(at.get("dialog")) == 1 and len(at.get("image")) == 1  # the page, drawn in a dialog
    assert any("boxed in yellow" in c.value for c in at.caption), [c.value for c in at.caption]


def test_a_page_that_cannot_be_drawn_says_so_in_a_sentence(data_dir: Path) -> None:
    """Issue 36 §2: a kept PDF pdfium cannot draw shows one plain sentence: no traceback, no server path."""
    at = AppTest.from_file(APP, default_timeout=180).run()
    at.chat_input[0].set_value("How long do I have to return a bike for a refund?").run()
    for kept in (data_dir / "originals").rglob("*.pdf"):
        kept.write_bytes(b"%PDF-1.7\n" + b"\x00garbage" * 200)  # the file on disk went bad since its ingest
    next(b for b in at.button if b.key and b.key.startswith("cited-page-0-")).click().run()
    assert not at.exception
    [error] = at.error
    assert error.value.startswith("The page cannot be drawn: ")
    assert str(data_dir) not in error.value and "Traceback" not in error.value and "/" not in error.value


def test_library_says_waiting_only_while_another_ingest_holds_the_store(data_dir: Path) -> None:
    from ingest.pipeline import WRITE_LOCK

    at = AppTest.from_file(APP, default_timeout=180).run()
    at.switch_page("app_pages/library.py").run()
    at.file_uploader[0].set_value([("notes.md", b"# Notes\nThe shop opens at 8:00 on Saturdays.", "text/markdown")])
    at.run()
    next(b for b in at.button if b.label.startswith("Ingest")).click().run()
    assert not at.exception
    assert not any(c.value.startswith("Waited") for c in at.caption)  # nothing else ran: no wait to name

    at.file_uploader[0].set_value([("more.md", b"# More\nThe shop closes at 17:00 on Sundays.", "text/markdown")])
    at.run()
    held, release = threading.Event(), threading.Event()

    def other_session() -> None:  # another session's ingest holds the write lock for a moment
        with WRITE_LOCK:
            held.set()
            release.wait(10)

    # taken only now, right before the click: an upload rerun slowed by a busy machine must not outlast it
    thread = threading.Thread(target=other_session)
    thread.start()
    held.wait(10)
    timer = threading.Timer(1.5, release.set)
    timer.start()
    try:
        next(b for b in at.button if b.label.startswith("Ingest")).click().run()
    finally:
        release.set()
        thread.join(10)
    assert not at.exception
    assert any(s.value.replace("\\", "").startswith("more.md: ok") for s in at.success)
    assert any(re.match(r"Waited [12] s for another session's ingest", c.value) for c in at.caption), at.caption


def test_evaluate_reads_run_i_of_n_and_explains_the_runs(data_dir: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from evaluation.run import RunProgress
    from tests.helpers import write_dataset

    said: list[str] = []
    progress = RunProgress(said.append, runs=2)
    progress.start_run("hybrid+rerank:x", 3)
    for j in (1, 2, 3):
        progress.question(j)
    assert said[0].startswith("run 1 of 2 (hybrid+rerank:x), question 1 of 3, about ")
    assert said[-1].startswith("run 1 of 2 (hybrid+rerank:x), question 3 of 3, about ") and said[-1].endswith(" left")

    write_dataset(tmp_path / "datasets" / "tiny")  # the page's first dataset folder
    monkeypatch.setenv("RAG_DATASETS_DIR", str(tmp_path / "datasets"))
    at = AppTest.from_file(APP, default_timeout=180).run()
    at.switch_page("app_pages/evaluate.py").run()
    next(b for b in at.button if b.label == "Run the evaluation").click().run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert "None" not in table["rerank p50 ms"].astype(str).tolist()
    assert table.loc[table["run"] == "hybrid", "rerank p50 ms"].tolist() == ["–"]
    assert any(c.value.startswith("Runs: dense, bm25 and hybrid are the first retrieval alone") for c in at.caption)
    texts = [t.value for t in at.text]
    assert any(t.startswith("run ") and " of " in t and "question" in t for t in texts), texts


def test_evaluations_own_collections_are_never_listed(data_dir: Path) -> None:
    from rag.settings import Settings
    from rag.store import KnowledgeBase, collection_names

    at = AppTest.from_file(APP, default_timeout=180).run()  # the samples go into 'default'
    KnowledgeBase(Settings(), "eval-xquad-en-e5")  # what an evaluation creates for itself
    assert "eval-xquad-en-e5" not in collection_names(Settings())
    at.switch_page("app_pages/library.py").run()
    assert not at.exception
    assert "eval-xquad-en-e5" not in at.selectbox[0].options and "default" in at.selectbox[0].options
