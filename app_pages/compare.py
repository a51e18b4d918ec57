"""Compare: one question answered twice, without and with the reranker, side by side, plus a slope chart
of every top-k candidate from its retrieval rank to its rerank rank."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from app_pages import _common as ui
from rag.models import ModelUnavailableError
from rag.store import StoreError
from rag.types import AskResult

RESULT = "compare_result"  # session_state key: (off, on | None) of the last comparison

st.title("Rerank off vs on")
st.caption("The same question twice: the top-n chunks straight from the vector search, and the top-n after "
           "the cross-encoder reranked all top-k candidates. Each side gets its own answer.")

settings = ui.settings_or_stop()

with st.form("compare"):
    question = st.text_input("Question", placeholder="e.g. What were the total net sales?")
    submitted = st.form_submit_button("Compare", type="primary")

try:
    rerank_error = ui.prepare(settings)
except ModelUnavailableError as error:
    st.error(f"The embedding model could not be loaded: {ui.escape_md(str(error))}")
    st.stop()

rerank_on = ui.rerank_enabled(settings)
if not rerank_on:
    st.info("Reranking is off (reranker = 'none'), so there is only the retrieval side to show. Choose a reranker "
            "on the Settings page to see what it changes.", icon=":material/info:")
elif rerank_error:
    st.error(f"The reranker '{ui.escape_md(settings.reranker)}' could not be loaded, so there is no 'with rerank' side. "
             f"Reason: {ui.escape_md(str(rerank_error))}", icon=":material/error:")

if submitted and question.strip():
    try:
        with st.spinner("Answering twice: without and with rerank…"):
            rag = ui.pipeline(settings)
            off = rag.ask(question, rerank=False)
            on = rag.ask(question, rerank=True) if rerank_on and not rerank_error else None
        st.session_state[RESULT] = (off, on)
    except (StoreError, ModelUnavailableError, ValueError) as error:
        st.error(f"The question could not be answered: {ui.escape_md(str(error))}")
        st.session_state.pop(RESULT, None)


def side(result: AskResult, title: str, caption: str) -> None:
    st.subheader(title)
    st.caption(caption)
    st.markdown(ui.badges(result))
    st.markdown(ui.answer_markdown(result.answer))
    ui.answer_notices(result, settings)
    ui.chunk_table(result, compact=True, expandable=False)
    ui.timings(result)


def slope_chart(result: AskResult) -> alt.Chart:
    """Every candidate as a line from its retrieval rank (left) to its rerank rank (right)."""
    top_n = len(result.chunks)
    rows = []
    for c in result.candidates:
        kept = c.final_rank <= top_n
        label = f"{c.citation} ({c.movement})"
        for stage, rank, score in (("1. retrieval", c.retrieval_rank, c.retrieval_score),
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
    st.markdown(f"**Question:** {ui.escape_md(off.question)}")
    left, right = st.columns(2, gap="large")
    with left:
        side(off, "Without rerank", f"top-{len(off.chunks)} by embedding similarity")
    with right:
        if on is None:
            st.subheader("With rerank")
            st.info("Reranking is off or unavailable (see above), so this side is empty.")
        else:
            side(on, "With rerank", f"top-{len(on.chunks)} of {len(on.candidates)} candidates, reordered by "
                                    f"{ui.model_label(on.reranker)}")
    if on is not None and on.candidates:
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
