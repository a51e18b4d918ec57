"""Compare: one question answered twice, side by side, each side with its own first stage (dense, BM25,
hybrid) and reranker (none, any catalog entry available here, or a folder; by default: the configured first
stage on both sides, without and with the configured reranker, so one thing changes), plus a slope chart of
every top-k candidate from its first-stage rank to its rerank rank, and a mark of which side answered that
lands in the feedback store as a judged question."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from app_pages import feedback_marks, rendering as render, state
from rag import catalog
from rag.embedders.models import ModelUnavailableError
from rag.settings import NO_RERANK
from rag.store import StoreError
from rag.types import AskResult

RESULT = "compare_result"  # session_state key: (off, on | None) of the last comparison

st.title("Compare")
st.caption("The same question twice, each side with its own first stage and reranker (or none): by default the same "
           "first stage on both sides, without and with the reranker, so the difference is the reranker's; or one "
           "first stage or reranker against another (MiniLM-L6 against MiniLM-L12, say). Each side gets its own "
           "answer; say which one answered, and the comparison becomes evaluation data (Feedback page).")
FIRST_STAGES = {"dense": "Embeddings (dense)", "bm25": "Words (BM25)", "hybrid": "Hybrid (dense + BM25)"}

settings = state.settings_or_stop()


def reranker_choices(configured: str) -> list[str]:
    """'none', the configured reranker, and every catalog reranker that can be loaded here and that this session
    may have the server load (state.may_load_reranker)."""
    names = [NO_RERANK, configured] + [r["name"] for r in catalog.rows() if r["available"]]
    return list(dict.fromkeys(n for n in names if n and (n == configured or state.may_load_reranker(n))))


choices = reranker_choices(settings.reranker)
admin = state.may_administer()  # a folder is the server's files: an open app or an admin key only
with st.form("compare"):
    question = st.text_input("Question", placeholder="e.g. What were the total net sales?")
    left_cfg, right_cfg = st.columns(2)
    # Both sides start from the configured first stage: left without the reranker, right with it (one change)
    left_stage = left_cfg.selectbox("Left: first stage", list(FIRST_STAGES), index=list(FIRST_STAGES).index(
        settings.retrieval), format_func=FIRST_STAGES.get)
    left_reranker = left_cfg.selectbox("Left: reranker", choices, index=0, format_func=render.model_label,
                                       help="'none' keeps the first stage's order")
    left_folder = left_cfg.text_input("Left: or a reranker folder", placeholder="/path/to/model", disabled=not admin,
                                      help="A local cross-encoder folder; overrides the choice above"
                                      + ("" if admin else f" ({state.ADMIN_ONLY})"))
    right_stage = right_cfg.selectbox("Right: first stage", list(FIRST_STAGES),
                                      index=list(FIRST_STAGES).index(settings.retrieval), format_func=FIRST_STAGES.get)
    right_reranker = right_cfg.selectbox("Right: reranker", choices, index=choices.index(settings.reranker)
                                         if settings.rerank_enabled else 0, format_func=render.model_label)
    right_folder = right_cfg.text_input("Right: or a reranker folder", placeholder="/path/to/model",
                                        disabled=not admin)
    submitted = st.form_submit_button("Compare", type="primary")

try:
    state.prepare(settings)
except ModelUnavailableError as error:
    st.error(f"The embedding model could not be loaded: {render.escape_md(str(error))}")
    st.stop()


def answer_side(stage: str, reranker: str) -> AskResult:
    """One side: the question through a pipeline whose settings name this side's reranker."""
    side_settings = settings.model_copy(update={"reranker": reranker})
    loaded = state.reranker(side_settings)  # raises ModelUnavailableError: shown, never a silent 'none'
    return state.pipeline(side_settings).ask(question, retrieval=stage, rerank=loaded is not None)


if submitted and question.strip():
    try:
        with st.spinner("Answering twice…"):
            left_result = answer_side(left_stage, admin and left_folder.strip() or left_reranker)
            right_result = answer_side(right_stage, admin and right_folder.strip() or right_reranker)
        st.session_state[RESULT] = (left_result, right_result)
    except (StoreError, ModelUnavailableError, ValueError) as error:
        st.error(f"The question could not be answered: {render.escape_md(str(error))}")
        st.session_state.pop(RESULT, None)


def describe(result: AskResult) -> tuple[str, str]:
    """(title, caption) of one side, from what it actually ran."""
    stage = FIRST_STAGES[result.retrieval]
    if not result.reranked:
        return f"{stage}, no rerank", f"top-{len(result.chunks)} straight from the first stage"
    return (f"{stage} + {render.model_label(result.reranker)}",
            f"top-{len(result.chunks)} of {len(result.candidates)} candidates; the first {result.reranked_count} "
            f"reordered by {render.model_label(result.reranker)}")


def side(result: AskResult, title: str, caption: str) -> None:
    st.subheader(render.escape_md(title))  # they name the reranker: a folder's name is anyone's string
    st.caption(render.escape_md(caption))
    st.markdown(render.badges(result))
    st.markdown(render.answer_markdown(result.answer))
    render.answer_notices(result, settings)
    render.chunk_table(result, compact=True, expandable=False)
    render.timings(result)


def slope_chart(result: AskResult) -> alt.Chart:
    """Every candidate as a line from its retrieval rank (left) to its rerank rank (right)."""
    top_n = len(result.chunks)
    rows = []
    for c in result.candidates:
        kept = c.final_rank <= top_n
        label = f"{c.citation} ({c.movement})"
        for stage, rank, score in (("1. first stage", c.retrieval_rank, c.retrieval_score),
                                   ("2. rerank", c.rerank_rank, c.rerank_score)):
            rows.append({"chunk": c.chunk_id, "stage": stage, "rank": rank, "score": score, "label": label,
                         "returned": f"top-{top_n} after rerank" if kept else "dropped",
                         "text": c.text[:160]})
    frame = pd.DataFrame(rows)
    base = alt.Chart(frame).encode(
        x=alt.X("stage:N", title=None, axis=alt.Axis(labelAngle=0, orient="top")),
        y=alt.Y("rank:Q", scale=alt.Scale(reverse=True, domain=[1, max(len(result.candidates), 2)], nice=False),
                title="rank (1 = best)"),
        color=alt.Color("returned:N", scale=alt.Scale(domain=[f"top-{top_n} after rerank", "dropped"],
                                                      range=["#e4572e", "#c8c8c8"]), title=None,
                        legend=alt.Legend(orient="bottom")),
        detail="chunk:N",
        tooltip=["label:N", "stage:N", "rank:Q", alt.Tooltip("score:Q", format=".3f"), "text:N"],
    )
    lines = base.mark_line(point=True).encode(
        strokeWidth=alt.condition(alt.datum.returned == "dropped", alt.value(1.2), alt.value(3)),
        order="stage:N",
    )
    labels = base.transform_filter(
        (alt.datum.stage == "2. rerank") & (alt.datum.returned != "dropped")
    ).mark_text(align="left", dx=8, fontSize=11).encode(text="label:N")
    return (lines + labels).properties(height=max(320, 24 * len(result.candidates)))


stored = st.session_state.get(RESULT)
if stored:
    left_result, right_result = stored
    st.markdown(f"**Question:** {render.escape_md(left_result.question)}")
    left, right = st.columns(2, gap="large")
    with left:
        side(left_result, *describe(left_result))
    with right:
        side(right_result, *describe(right_result))
    feedback_marks.side_judgement(left_result, right_result, settings)
    st.divider()
    a, b, c = st.columns(3)
    a.metric("Rerank cost, right − left", f"{right_result.rerank_cost_ms - left_result.rerank_cost_ms:+.0f} ms",
             help=f"Left {left_result.rerank_cost_ms:.0f} ms, right {right_result.rerank_cost_ms:.0f} ms scoring "
                  "(question, chunk) pairs")
    b.metric("Chunks changed in the top-n", f"{right_result.changed_against(left_result)} of {len(right_result.chunks)}",
             help="Chunks the right side returns that the left side does not (counted against the other side)")
    c.metric("Candidates reranked, right", f"{right_result.reranked_count} of {len(right_result.candidates)}",
             help="The reranker scores the first stage's top RAG_RERANK_DEPTH candidates (Settings: rerank depth); "
                  "the rest keep their first-stage order below them")
    for result, where in ((right_result, "right"), (left_result, "left")):
        if result.reranked and result.candidates:
            st.subheader(f"How the {where} side's reranker moved every candidate")
            st.altair_chart(slope_chart(result), width="stretch")
