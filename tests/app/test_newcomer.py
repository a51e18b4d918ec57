"""What a newcomer tripped over on the Ask page (issue 24): the chat's download holds the answer just given,
a search that did not find a chunk shows "–" (not "None"), the retrieval score's help says its scale."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app_pages.rendering import NOT_FOUND, RETRIEVAL_SCORE_HELP, chunk_frame
from rag.types import ChunkHit

APP = str(Path(__file__).resolve().parents[2] / "app.py")


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    store = tmp_path / "store"
    monkeypatch.setenv("RAG_DATA_DIR", str(store))
    return store


def test_a_search_that_missed_a_chunk_shows_a_dash() -> None:
    hit = ChunkHit(chunk_id="c", doc_id="d", source="faq.txt", text="It charges in 4.5 h.", retrieval_rank=1,
                   retrieval_score=1.2, dense_rank=3, bm25_rank=None)
    row = chunk_frame([hit]).iloc[0]
    assert row["BM25 rank"] == NOT_FOUND and row["dense rank"] == "3"
    assert "0 to 2" in RETRIEVAL_SCORE_HELP["hybrid"] and "not across answers" in RETRIEVAL_SCORE_HELP["hybrid"]


def test_download_chat_is_drawn_after_the_answer_just_given(data_dir: Path, plumbing_reranker: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The button's data is fixed when it is drawn: drawn after this run's answer joined the chat, it holds it
    (before, it was drawn above the new question and saved the chat without its last answer)."""
    monkeypatch.setenv("RAG_RERANKER", plumbing_reranker)
    at = AppTest.from_file(APP, default_timeout=180).run()
    at.chat_input[0].set_value("How long does the battery take to charge?").run()
    assert not at.exception and len(at.session_state["chat"]) == 1
    order = [type(node).__name__ if getattr(node, "type", "") != "download_button" else "download"
             for node in _walk(at.main)]  # the page's elements in the order they are drawn
    assert "download" in order and order.index("download") > max(
        i for i, kind in enumerate(order) if kind == "ChatMessage"), order

def _walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


def test_the_document_filter_asks_only_the_chosen_document(data_dir: Path, plumbing_reranker: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_RERANKER", plumbing_reranker)
    at = AppTest.from_file(APP, default_timeout=180).run()
    chooser = next(m for m in at.multiselect if m.label == "Ask only these documents")
    assert "warranty.html" in chooser.options
    chooser.set_value(["warranty.html"]).run()
    at.chat_input[0].set_value("How long is the battery covered?").run()
    assert not at.exception
    result = at.session_state["chat"][-1]["result"]
    assert result.sources == ["warranty.html"] and {c.source for c in result.candidates} == {"warranty.html"}


def test_settings_names_the_engine_each_loaded_model_runs_on(data_dir: Path) -> None:
    at = AppTest.from_file(APP, default_timeout=180).run()
    at.switch_page("app_pages/settings.py").run()
    assert not at.exception
    table = next(d.value for d in at.dataframe if "engine" in d.value.columns)
    engines = dict(zip(table["role"], table["engine"], strict=True))
    assert engines["embedder"] == "ONNX Runtime" and engines["reranker"] == "ONNX Runtime", engines


def test_each_answer_can_be_copied_as_plain_text(data_dir: Path, plumbing_reranker: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_RERANKER", plumbing_reranker)
    at = AppTest.from_file(APP, default_timeout=180).run()
    at.chat_input[0].set_value("How long does the battery take to charge?").run()
    assert not at.exception
    answer = at.session_state["chat"][-1]["result"].answer
    assert answer and answer in [c.value for c in at.code]  # st.code: Streamlit's copy button
