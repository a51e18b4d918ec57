"""Evaluate: hit rate and MRR at top-n, without and with rerank, on a public dataset folder (BEIR format)
or on the current collection with a questions file. The numbers come from evaluation.run."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st
from pydantic import ValidationError

from app_pages import rendering as render, state
from evaluation import run as evaluate
from evaluation.report import chart
from rag import catalog
from evaluation.datasets import DatasetFormatError, list_datasets
from rag.embedders.models import ModelUnavailableError
from rag.settings import NO_RERANK
from rag.store import StoreError

REPORT = "eval_report"  # session_state key: the last report of this session
NOT_APPLICABLE_AS_DASH = ("rerank p50 ms", "answer p50 ms")  # milliseconds; None where the run has no such stage
RUN_NAMES = ("Runs: dense, bm25 and hybrid are the first retrieval alone (the embedding search, the word search, "
             "both fused), in their own order; hybrid+rerank:<model> (bm25+…) is that first stage's top-k "
             "reordered by the reranker <model>; rerank:<model> alone is the dense search reranked (the name "
             "older reports use). A first stage alone is read from its reranked run's very candidates, not asked "
             "again. (default) marks what the Ask page does with these settings.")

st.title("Evaluate")
st.caption("Does the reranker help on your kind of documents? Hit rate and MRR at top-n for the first retrieval "
           "alone and after rerank, through the same pipeline the Ask page uses (no LLM).")

settings = state.settings_or_stop()


def dataset_folders() -> list[str]:
    return [str(path) for path in list_datasets(settings.datasets_dir)]


rerankers = evaluate.default_rerankers(settings)
st.info(f"Compares the first retrieval with rerank by {render.escape_md(', '.join(render.model_label(r) for r in rerankers))} "
        f"(top_k {settings.top_k} → top_n {settings.top_n}; change them on the Settings page).",
        icon=":material/info:")

# A collection's name is 3-512 of [A-Za-z0-9._-], starting and ending with a letter or digit (Chroma's rule), which
# Markdown leaves as it is: the option needs no escape
mode = st.radio("Questions from", ["A dataset folder (BEIR format)", f"This collection ('{settings.collection}') "
                                   "with a questions file"], horizontal=True)
by_dataset = mode.startswith("A dataset")
with st.container(border=True):
    if by_dataset:
        folders = dataset_folders()
        typed = state.may_administer()  # a typed path reads any folder of the server: an open app or an admin key
        folder = st.selectbox("Dataset", folders, index=0 if folders else None,
                              placeholder=f"No dataset folder found under {settings.datasets_dir}", accept_new_options=typed,
                              help="A folder with corpus.jsonl, queries.jsonl and qrels.tsv"
                                   + ("; type a path for another" if typed else f"; another one {state.ADMIN_ONLY}"))
        if folder is not None and folder not in folders and not typed:
            folder = None  # only the listed folders, whatever a session sends
        a, b = st.columns(2)
        queries = a.number_input("Queries (the first N with judgements)", 1, 20000, 50)
        chunk = b.checkbox("Split long documents into chunks, as ingest does", value=False)
        answers = b.checkbox("Also score the answers", value=False,
                             help="Answer every question and check whether the answer, and its lead (the text "
                                  "before its first [n]), contains a gold answer of the set's answers.jsonl; the "
                                  "extractive answer always, the LLM's too when one is configured (slower)")
    else:
        upload = st.file_uploader("Questions file (.jsonl)", type=["jsonl", "json"],
                                  help='One {"question": ..., "expected_source": "file.pdf"} (or "expected_chunk_id") '
                                       "per line")
        queries = st.number_input("At most this many questions", 1, 20000, 200)
    g, h = st.columns(2)
    grid = g.checkbox("Every reranker available here, side by side", value=False, disabled=not state.may_administer(),
                      help="One run per catalog reranker that loads on this machine, each over the same candidates"
                           + ("" if state.may_administer() else f" ({state.ADMIN_ONLY})"))
    budget = h.number_input("Latency budget, ms per query (p50)", 1, 100000, 500,
                            help="The recommendation is the best run by MRR whose median time per query fits this")
    run = st.button("Run the evaluation", type="primary")

if run:
    try:
        with st.status("Evaluating…", expanded=True) as status:
            state.load_models(settings)
            say = st.empty()

            def progress(message: str) -> None:
                say.text(message)

            chosen = ([r["name"] for r in catalog.rows() if r["available"]] if grid and state.may_administer()
                      else [r for r in rerankers if state.may_load_reranker(r)])
            if not chosen:
                raise evaluate.EvalError("the server runs no reranker to compare with, and loading one is "
                                         + state.ADMIN_ONLY)
            if by_dataset:
                if not folder:
                    raise evaluate.EvalError("choose a dataset folder")
                report = evaluate.evaluate_dataset(settings, folder, queries=int(queries), chunk=chunk,
                                                   answers=answers, rerankers=chosen, progress=progress)
            else:
                if upload is None:
                    raise evaluate.EvalError("upload a questions file first")
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / upload.name
                    path.write_bytes(upload.getvalue())
                    report = evaluate.evaluate_questions(settings, path, limit=int(queries), rerankers=chosen,
                                                         progress=progress)
            status.update(label=f"Evaluated {report.queries} questions", state="complete", expanded=False)
        st.session_state[REPORT] = (report, float(budget))
    except (evaluate.EvalError, DatasetFormatError, StoreError, ModelUnavailableError, OSError) as error:
        st.error(f"The evaluation could not run: {render.escape_md(str(error))}")


def use_run(run) -> None:
    """A button that makes ``run``'s first stage and reranker this session's settings (as the Settings page's
    Apply does); a reranker the server has not loaded needs an admin key (it reads the server's files)."""
    reranker = run.reranker or NO_RERANK
    changes = {"retrieval": run.first_stage, "reranker": reranker}
    may = state.may_load_reranker(reranker)
    label = f"Use {run.name} in this session"
    if not st.button(render.escape_md(label), icon=":material/check:", disabled=not may,
                     help="Sets this session's first stage and reranker as the Settings page would"
                          + ("" if may else f" (loading another reranker: {state.ADMIN_ONLY})")):
        return
    try:
        new = state.apply_overrides(changes)
        error = state.load_models(new)
    except (ValidationError, ModelUnavailableError) as failure:
        error = str(failure)
    if error:
        st.error(f"Not applied: {render.escape_md(str(error))}")
    else:
        st.success(f"This session now asks with {render.escape_md(run.name)}: first stage {new.retrieval}, "
                   f"reranker {render.escape_md(render.model_label(new.reranker))} (Settings page to change it back).")


stored = st.session_state.get(REPORT)
if stored:
    report, budget = stored
    st.subheader(render.escape_md(report.dataset))  # a folder or an uploaded file's name
    st.success(render.escape_md(report.recommend(budget)), icon=":material/recommend:")  # names a folder's model
    best = report.recommended_run(budget)
    if best is not None and not best.default and best.embedder == report.embedder:  # the session's own embedder
        use_run(best)
    st.caption(f"{report.queries} questions · top-{report.top_k} → top-{report.top_n} · embedder {render.escape_md(report.embedder)}")
    frame = pd.DataFrame(report.rows())
    # What the user asked about first (the run, its hit and MRR, the answers' scores when ticked), times after it:
    # with every column in the report's order the answer columns were off the right edge
    first = [c for c in frame.columns if c == "run" or c.startswith(("hit@", "MRR@")) or "gold" in c]
    frame = frame[first + [c for c in frame.columns if c not in first]]
    for column in NOT_APPLICABLE_AS_DASH:  # a run without a rerank has no rerank time: "–", never "None"
        if column in frame:
            frame[column] = [render.NOT_FOUND if value is None or pd.isna(value) else f"{value:.0f}"
                             for value in frame[column]]
    st.dataframe(frame, hide_index=True, width="stretch", column_config={
        # the run's whole name (a reranker's hub id is long); the bars and the times narrow, so the table fits
        "run": st.column_config.TextColumn("run", help=RUN_NAMES, width="medium"),
        f"hit@{report.top_n}": st.column_config.ProgressColumn(format="%.3f", min_value=0.0, max_value=1.0,
                                                               width=110),
        f"MRR@{report.top_n}": st.column_config.ProgressColumn(format="%.3f", min_value=0.0, max_value=1.0,
                                                               width=110),
        **{name: st.column_config.NumberColumn(format="%.0f", width="small") for name in ("p50 ms", "p95 ms")},
        **{name: st.column_config.ProgressColumn(format="%.3f", min_value=0.0, max_value=1.0,
                                                 help="Share of the answers that contain a gold answer; '| hit': "
                                                      "over the questions whose passage was among the top-n")
           for name in ("answer ∋ gold", "answer ∋ gold | hit", "lead ∋ gold | hit")},
        "gold words held | hit": st.column_config.ProgressColumn(
            format="%.3f", min_value=0.0, max_value=1.0, help="Share of the gold answer's words the answer holds, "
            "over the questions whose passage was among the top-n"),
    })
    st.caption(RUN_NAMES)
    st.altair_chart(chart(report), width="stretch")
    st.caption(report.metrics)
