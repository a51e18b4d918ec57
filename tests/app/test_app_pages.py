"""The Streamlit pages, run in-process by AppTest against a real temporary store and real models: Ask, Library,
and two sessions at once (Compare, Settings and Evaluate: test_app_tool_pages.py).

Each test starts the app on an empty data dir: the first run ingests the sample documents
(data/sample), as `make run` does for a new user. The rerank plumbing uses ``plumbing_reranker``
(a random head): these tests assert behaviour, never ranking quality.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.app.apptest import ask, assert_clean, raw, start, texts
from tests.helpers import SAMPLE


# ---- Ask -------------------------------------------------------------------------------------------
def test_ask_answers_with_citations_and_chunk_table(reranked: str) -> None:
    at = start()
    # first start: the sample documents went into the empty default collection
    assert any("sample documents" in s.label for s in at.status), [s.label for s in at.status]
    ask(at, "How long do I have to return a bike for a refund?")

    markdown = " ".join(texts(at.markdown))
    assert "Extractive answer" in markdown and "reranked by" in markdown
    assert "**[1]**" in markdown  # citations in the answer and in the sources line
    table = at.dataframe[0].value
    # by default the final order blends the rerank score with the first stage's (RAG_RERANK_WEIGHT)
    # narrow enough for the chat's column: each search's ranks and the text are in the expanders below it
    assert list(table.columns)[:7] == ["cite", "moved", "rerank score", "retrieval score", "final score", "source",
                                       "page"]
    # each chunk's document title beside its source (ingest.identity): the sample handbook's first heading
    assert any("Kestrel Cycles" in document for document in table["document"])
    assert len(table) == 5 and table["cite"].tolist() == ["[1]", "[2]", "[3]", "[4]", "[5]"]
    result = at.session_state["chat"][0]["result"]
    assert table["moved"].tolist() == [c.movement if c.movement == "=" else f"{c.movement} (was {c.retrieval_rank})"
                                       for c in result.chunks]
    # the scales are named: the hybrid first stage's score is the fused one, and the final score set the order
    captions = texts(at.caption)
    assert any(c.startswith("Scores · rerank score:") and "fused score: the two searches fused" in c
               and "final score: the blend of both that set the order" in c for c in captions), captions
    details = [c for e in at.expander if "how it ranked, full text" in e.label for c in texts(e.caption)]
    assert len(details) == 5 and all("first-stage rank" in d and "final rank" in d for d in details), details
    assert all(re.search(r"found by (both|dense|bm25)", d) for d in details)
    assert any("BM25" in c and "fuse" in c and "rerank" in c and "total" in c for c in texts(at.caption))

    # the history stays in this session, and the next question adds to it
    ask(at, "How many days of paid holiday do employees get?")
    assert len(at.session_state["chat"]) == 2
    assert len(at.dataframe) == 2


def test_a_question_the_reranker_cannot_read_says_why_it_was_not_reranked(data_dir: Path) -> None:
    at = ask(start(), "退货退款的期限是多久？")  # the shipped reranker reads English only
    markdown = " ".join(texts(at.markdown))
    assert "not reranked: the reranker does not read this language" in markdown
    assert any("does not read Chinese" in c for c in texts(at.caption))
    assert "before rerank" not in at.dataframe[0].value.columns  # the first stage's order, shown as such


def test_a_follow_up_reads_the_chat_and_new_chat_forgets_it(reranked: str) -> None:
    at = ask(start(), "How long does the battery take to charge?")
    assert "searched for: “How long does the battery take to charge?”" in " ".join(texts(at.caption))
    # the chunk the answer quoted shows its sentence in bold, as escaped text
    quoted = [e for e in at.expander if "the answer's sentences in bold" in e.label]
    assert quoted and any("**" in m for e in quoted for m in raw(e.markdown))
    ask(at, "And with the fast charger?")
    follow_up = at.session_state["chat"][1]["result"]
    assert follow_up.context_query == "How long does the battery take to charge? And with the fast charger?"
    assert any("(with the previous question), fused" in c for c in texts(at.caption))
    assert len(at.get("download_button")) == 1
    next(b for b in at.button if b.label == "New chat").click().run()
    assert_clean(at)
    assert at.session_state["chat"] == [] and not at.dataframe
    ask(at, "And with the fast charger?")
    assert at.session_state["chat"][0]["result"].context_query is None  # a new chat: no history


def test_ask_streams_the_llm_answer(reranked: str, openai_server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.url)
    monkeypatch.setenv("RAG_LLM_MODEL", "test-model")
    at = ask(start(), "How long is the refund window?")
    markdown = " ".join(texts(at.markdown))
    assert "LLM answer · test-model" in markdown
    assert "The refund window is 30 days **[1]**" in markdown
    assert openai_server.requests[-1]["stream"] is True
    assert not at.error


def test_a_session_base_url_never_receives_the_servers_key(reranked: str, openai_server,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.helpers import FakeOpenAI, openai_handler

    from http.server import ThreadingHTTPServer
    import threading

    visitor = FakeOpenAI(url="")  # a server a browser visitor runs
    server = ThreadingHTTPServer(("127.0.0.1", 0), openai_handler(visitor))
    visitor.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-server-secret-1234")
        monkeypatch.setenv("OPENAI_BASE_URL", openai_server.url)
        monkeypatch.setenv("RAG_LLM_MODEL", "test-model")
        at = start("settings")
        next(t for t in at.text_input if t.label == "Base URL").set_value(visitor.url)
        at.button(key="FormSubmitter:settings-Apply").click().run()
        assert_clean(at)
        at.switch_page("app_pages/ask.py").run()
        ask(at, "How long is the refund window?")
        assert visitor.requests, "the session's base URL was asked"
        assert all("sk-server-secret-1234" not in r["_authorization"] for r in visitor.requests)

        # with a key of its own, the session's key goes to the session's server
        at.switch_page("app_pages/settings.py").run()
        next(t for t in at.text_input if t.label.startswith("API key for this base URL")).set_value("sk-visitor")
        at.button(key="FormSubmitter:settings-Apply").click().run()
        at.switch_page("app_pages/ask.py").run()
        ask(at, "How long is the refund window?")
        assert visitor.requests[-1]["_authorization"] == "Bearer sk-visitor"
        assert not openai_server.requests  # and the server's own base URL was never involved
    finally:
        server.shutdown()
        server.server_close()


def test_llm_failure_is_explained_and_retrieval_still_shows(
    reranked: str, openai_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.url)
    monkeypatch.setenv("RAG_LLM_MODEL", "fail-401")
    at = ask(start(), "How long is the refund window?")
    errors = " ".join(texts(at.error))
    assert "LLM could not answer" in errors and "401" in errors
    assert "Extractive answer" in " ".join(texts(at.markdown))
    assert len(at.dataframe[0].value) == 5


def test_low_confidence_warns_that_the_documents_may_not_answer() -> None:
    at = ask(start(), "What was Microsoft's revenue in Q3 2023?")
    warnings = " ".join(texts(at.warning))
    assert "may not contain the answer" in warnings and "likely unanswered by the documents" in warnings
    shown = " ".join(texts(at.markdown))
    assert "The documents do not seem to answer this question." in shown and "The closest passages:" in shown
    assert "the documents may not answer this" in shown  # the badge
    assert len(at.dataframe[0].value) == 5  # the chunks still show


def test_an_answered_question_gets_no_warning() -> None:
    at = ask(start(), "How long do I have to return a bike?")
    assert not any("may not contain the answer" in w for w in texts(at.warning))
    assert "do not seem to answer" not in " ".join(texts(at.markdown))


def documents_in(data_dir: Path) -> set[str]:
    from rag.settings import Settings
    from rag.store import KnowledgeBase

    return {record.source for record in KnowledgeBase(Settings(data_dir=data_dir)).documents()}


def test_a_first_start_ingest_cut_short_is_finished_on_the_next_run(data_dir: Path) -> None:
    from ingest.pipeline import Ingestor
    from rag.settings import Settings

    # a rerun stopped the first start after one sample file: no marker, one document in
    Ingestor(Settings(data_dir=data_dir)).ingest_paths([SAMPLE / "product-faq.txt"])
    at = start()
    assert documents_in(data_dir) == {p.name for p in SAMPLE.iterdir()}
    assert any(s.label == "Added the sample documents (5 of 5)" for s in at.get("status"))
    assert at.chat_input  # a question can be sent once the samples are in


def test_a_collection_with_the_users_own_documents_gets_no_samples(data_dir: Path, tmp_path: Path) -> None:
    from ingest.pipeline import Ingestor
    from rag.settings import Settings

    own = tmp_path / "minutes.txt"
    own.write_text("The board met on Tuesday and approved the budget.")
    Ingestor(Settings(data_dir=data_dir)).ingest_paths([own])
    start()
    assert documents_in(data_dir) == {"minutes.txt"}


def test_document_text_is_rendered_as_text(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    samples = tmp_path / "samples"
    samples.mkdir()
    (samples / "tricky.md").write_text(
        "The refund window is thirty days <img src=x onerror=alert(1)> [click](javascript:alert(1)) "
        "![pic](http://example.com/x.png) $x^2$ and *stars* stay literal."
    )
    monkeypatch.setenv("RAG_SAMPLE_DIR", str(samples))
    at = ask(start(), "What is the refund window?")
    assert not at.get("html")
    answer = next(m for m in raw(at.markdown) if "refund window" in m)
    assert "\\<img" in answer and "\\[click\\]\\(javascript" in answer and "\\!\\[pic\\]" in answer
    assert "\\$x^2\\$" in answer or "\\$x" in answer


def test_broken_reranker_is_reported_not_silently_dropped(data_dir: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_RERANKER", str(tmp_path / "no-such-reranker"))
    at = ask(start(), "How long is the refund window?")
    assert any("reranker could not be loaded" in e and "NOT reranked" in e for e in texts(at.error))
    assert "not reranked" in " ".join(texts(at.markdown))
    assert "before rerank" not in at.dataframe[0].value.columns  # retrieval results still show


# ---- Library ---------------------------------------------------------------------------------------
def test_library_upload_reports_each_file_and_a_broken_pdf_fails_alone(data_dir: Path) -> None:
    at = start("library")
    at.file_uploader[0].set_value([
        ("notes.md", b"# Notes\nThe workshop in Leeds opens at 8:00 on Saturdays.", "text/markdown"),
        ("broken.pdf", b"%PDF-1.7\nthis is not really a PDF", "application/pdf"),
        ("policy.txt", b"Bikes are serviced free of charge during the first year.", "text/plain"),
    ]).run()
    ingest = next(b for b in at.button if b.label.startswith("Ingest"))
    assert ingest.label == "Ingest 3 files"
    ingest.click().run()
    assert_clean(at)
    assert any(s.startswith("notes.md: ok ") and "chunks" in s for s in texts(at.success))
    assert any(s.startswith("policy.txt: ok ") for s in texts(at.success))
    assert any(s.startswith("broken.pdf: failed: ") for s in texts(at.error))
    sources = at.dataframe[0].value["source"].tolist()
    assert "notes.md" in sources and "policy.txt" in sources and "broken.pdf" not in sources

    # the same files again: unchanged ones are skipped
    next(b for b in at.button if b.label.startswith("Ingest")).click().run()
    assert any("notes.md: skipped" in s for s in texts(at.info))


def test_library_delete_removes_the_document(data_dir: Path) -> None:
    at = start("library")
    sources = at.dataframe[0].value["source"].tolist()
    assert "employee-handbook.md" in sources  # a sample document
    delete = next(s for s in at.selectbox if s.label == "Delete a document")
    delete.select("employee-handbook.md").run()
    next(b for b in at.button if b.label == "Delete").click().run()
    assert_clean(at)
    assert any(s.startswith("Deleted employee-handbook.md") for s in texts(at.success))
    assert "employee-handbook.md" not in at.dataframe[0].value["source"].tolist()


def test_library_creates_and_switches_collection(data_dir: Path) -> None:
    at = start("library")
    at.text_input(key="new_collection").input("contracts")
    at.button[0].click().run()  # the form's Create button comes first
    assert_clean(at)
    assert at.session_state["collection"] == "contracts"
    assert at.selectbox[0].value == "contracts"
    assert any("No documents yet" in i for i in texts(at.info))
    at.switch_page("app_pages/ask.py").run()
    ask(at, "Anything?")
    assert any("no documents yet" in i for i in texts(at.info))


# ---- two sessions at once --------------------------------------------------------------------------
def test_ingest_chunking_never_breaks_another_sessions_batch() -> None:
    """One session's ingest sizes chunks while another's answer embeds a batch through the same model
    (the app shares one Embedder per server; its tokenize must not touch the batch tokenizer's state)."""
    import random
    import threading

    from rag.embedders.models import load_embedder

    shared = load_embedder("all-MiniLM-L6-v2")
    texts = [" ".join(["bike"] * random.Random(i).randint(5, 120)) for i in range(24)]
    stop = threading.Event()

    def chunk_forever() -> None:
        while not stop.is_set():
            for text in texts:
                shared.tokenize(text)

    thread = threading.Thread(target=chunk_forever)
    thread.start()
    try:
        for _ in range(3):
            assert shared.embed_documents(texts).shape == (24, 384)
    finally:
        stop.set()
        thread.join()


def test_a_new_user_can_click_an_example_question(data_dir: Path) -> None:
    from app_pages.examples import EXAMPLES

    at = start()
    buttons = [b for b in at.button if b.label in {e.question for e in EXAMPLES}]
    # every example whole (two to a row, so none is cut), each saying what it shows
    assert [b.label for b in buttons] == [e.question for e in EXAMPLES] and all(b.help for b in buttons)
    buttons[0].click().run()
    assert_clean(at)
    assert at.session_state["chat"][0]["result"].question == EXAMPLES[0].question
    assert len(at.dataframe) == 1
    assert not any(b.label == EXAMPLES[1].question for b in at.button)  # examples make way
