"""Compare: one question answered twice, side by side, each side with its own first stage (dense, BM25,
hybrid) and rerank on or off (by default: embedding search alone against hybrid + rerank), plus a slope
chart of every top-k candidate from its first-stage rank to its rerank rank."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from app_pages import rendering as render, state
from rag.models import ModelUnavailableError
from rag.store import StoreError
from rag.types import AskResult

RESULT = "compare_result"  # session_state key: (off, on | None) of the last comparison

st.title("Compare")
st.caption("The same question twice, each side with its own first stage and rerank on or off: for example the "
           "top-n straight from the embedding search, against the top-n after hybrid search and the cross-encoder "
           "reranked all top-k candidates. Each side gets its own answer.")
FIRST_STAGES = {"dense": "Embeddings (dense)", "bm25": "Words (BM25)", "hybrid": "Hybrid (dense + BM25)"}

settings = state.settings_or_stop()

with st.form("compare"):
    question = st.text_input("Question", placeholder="e.g. What were the total net sales?")
    left_cfg, right_cfg = st.columns(2)
    left_stage = left_cfg.selectbox("Left: first stage", list(FIRST_STAGES), index=0, format_func=FIRST_STAGES.get)
    left_rerank = left_cfg.toggle("Left: rerank", value=False)
    right_stage = right_cfg.selectbox("Right: first stage", list(FIRST_STAGES),
                                      index=list(FIRST_STAGES).index(settings.retrieval), format_func=FIRST_STAGES.get)
    right_rerank = right_cfg.toggle("Right: rerank", value=True)
    submitted = st.form_submit_button("Compare", type="primary")

try:
    rerank_error = state.prepare(settings)
except ModelUnavailableError as error:
    st.error(f"The embedding model could not be loaded: {render.escape_md(str(error))}")
    st.stop()

rerank_on = settings.rerank_enabled
if not rerank_on:
    st.info("Reranking is off (reranker = 'none'), so there is only the retrieval side to show. Choose a reranker "
            "on the Settings page to see what it changes.", icon=":material/info:")
elif rerank_error:
    st.error(f"The reranker '{render.escape_md(settings.reranker)}' could not be loaded, so there is no 'with rerank' side. "
             f"Reason: {render.escape_md(str(rerank_error))}", icon=":material/error:")

if submitted and question.strip():
    try:
        can_rerank = rerank_on and not rerank_error
        with st.spinner("Answering twice…"):
            rag = state.pipeline(settings)
            off = rag.ask(question, retrieval=left_stage, rerank=left_rerank and can_rerank)
            on = (rag.ask(question, retrieval=right_stage, rerank=right_rerank)
                  if can_rerank or not right_rerank else None)
        st.session_state[RESULT] = (off, on)
    except (StoreError, ModelUnavailableError, ValueError) as error:
        st.error(f"The question could not be answered: {render.escape_md(str(error))}")
        st.session_state.pop(RESULT, None)


def describe(result: AskResult) -> tuple[str, str]:
    """(title, caption) of one side, from what it actually ran."""
    stage = FIRST_STAGES[result.retrieval]
    if not result.reranked:
        return f"{stage}, no rerank", f"top-{len(result.chunks)} straight from the first stage"
    return (f"{stage} + rerank", f"top-{len(result.chunks)} of {len(result.candidates)} candidates, reordered by "
                                 f"{render.model_label(result.reranker)}")


def side(result: AskResult, title: str, caption: str) -> None:
    st.subheader(title)
    st.caption(caption)
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
    off, on = stored
    st.markdown(f"**Question:** {render.escape_md(off.question)}")
    left, right = st.columns(2, gap="large")
    with left:
        side(off, *describe(off))
    with right:
        if on is None:
            st.subheader("With rerank")
            st.info("Reranking is off or unavailable (see above), so this side is empty.")
        else:
            side(on, *describe(on))
    if on is not None and on.reranked and on.candidates:
        st.divider()
        a, b, c = st.columns(3)
        a.metric("Rerank cost", f"{on.rerank_cost_ms:.0f} ms", help=f"{len(on.candidates)} (question, chunk) pairs "
                 "scored by the cross-encoder")
        b.metric("Chunks changed in the top-n", f"{on.promoted} of {len(on.chunks)}",
                 help="Returned after rerank but not in the retrieval's top-n")
        c.metric("Candidates reranked", f"{len(on.candidates)}",
                 help="top_k: every candidate of the first retrieval is scored against the question")
        st.subheader("How the reranker moved every candidate")
        st.altair_chart(slope_chart(on), width="stretch")
