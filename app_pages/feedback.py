"""Feedback: the marks of this collection (list, delete, export), a fine-tune of its reranker on them, and the
switch to the fine-tuned reranker only after old and new were compared, with one click back.

The training runs as a background job (training.feedback_job): closing the page stops nothing, and the page
shows the job's status from disk whenever it is opened. Every user string is drawn with st.text or in a
dataframe, never as Markdown.
"""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from app_pages import state
from app_pages.rendering import escape_md, plural
from rag.feedback import FeedbackStore, collection_reranker
from rag.store import StoreError
from training.feedback import NotEnoughFeedback
from training.feedback_job import RUNNING, TrainingBusy, jobs, start, training_running

st.title("Feedback")
st.caption("Marks left under answers on the Ask page (or sent to POST /v1/feedback) say which chunks answer a "
           "question. Enough of them can fine-tune this collection's reranker; it is used only once you switch.")

settings = state.settings_or_stop()
collection = settings.collection
if not state.may_open(collection):
    st.error(f"This session's key does not open the collection {escape_md(collection)}.")
    st.stop()
# Marks, training and the switch change what every user of the collection gets: a read-only session only looks.
refused = state.why_read_only(collection)
store = FeedbackStore(settings)
try:
    marks = store.marks(collection)
    trainable = store.trainable_questions(collection)
except StoreError as error:
    st.error(f"The feedback could not be read: {escape_md(str(error))}")
    st.stop()

st.text(f"Collection: {collection} · {plural(len(marks), 'mark')} · {plural(len(trainable), 'question')} with a "
        "chunk marked as answering it")
if refused:
    st.text(f"Read only: {refused}")

# ---- the marks -----------------------------------------------------------------------------------------
def described_chunks(ids: list[str]) -> dict[str, str]:
    """Each marked chunk as a person knows it: its source, page and first words (a chunk gone since: its id)."""
    try:
        found = state.knowledge_base(settings, collection).get_chunks(ids) if ids else []
    except StoreError:
        return {}
    return {c.chunk_id: f"{c.source}{f', p. {c.page}' if c.page is not None else ''}: "
                        f"{' '.join(c.text.split()[:10])}…" for c in found}


if marks:
    chunk_names = described_chunks([m.chunk_ids[0] for m in marks if m.kind == "chunk"])
    st.dataframe(pd.DataFrame([{"when": m.created_at, "question": m.question, "mark": m.kind, "label": m.label,
                                "chunk": chunk_names.get(m.chunk_ids[0], m.chunk_ids[0]) if m.kind == "chunk"
                                else plural(len(m.chunk_ids), "chunk"),
                                "reranker": state.shown_model(m.reranker), "by": m.by} for m in marks]),
                 hide_index=True, width="stretch")
    by_id = {m.mark_id: m for m in marks}
    chosen = st.multiselect("Marks to delete", list(by_id), format_func=lambda i: (
        f"{by_id[i].created_at} · {by_id[i].label} · {by_id[i].question[:80]}"), placeholder="Pick marks")
    if st.button("Delete the chosen marks", disabled=not chosen or bool(refused), icon=":material/delete:"):
        removed = store.delete(collection, chosen)
        st.toast(f"Deleted {removed} mark(s)")
        st.rerun()
    left, right = st.columns(2)
    left.download_button("Export the questions file", store.questions_jsonl(collection),
                         file_name=f"{collection}-questions.jsonl", mime="application/x-ndjson",
                         help="What `rerank-rag eval --collection C --questions F` reads", icon=":material/download:")
    right.download_button("Export training pairs", store.pairs_jsonl(collection),
                          file_name=f"{collection}-pairs.jsonl", mime="application/x-ndjson",
                          help="What `rerank-rag reranker train --dataset F.jsonl` reads", icon=":material/download:")
else:
    st.info("No marks yet: under each answer on the Ask page, open \"Mark this answer\".")

# ---- the reranker in use -------------------------------------------------------------------------------
st.subheader("Reranker")
chosen_reranker = store.choice(collection)
in_use = collection_reranker(settings, collection) or settings.reranker
st.text(f"In use for this collection: {state.shown_model(in_use)}")
if chosen_reranker and "reranker" in settings.model_fields_set:
    st.warning("This session's settings (RAG_RERANKER or the Settings page) name a reranker, which wins over the "
               "collection's choice.")
if chosen_reranker:
    back_to = (state.shown_model(chosen_reranker["previous"])
               or f"the configured one ({state.shown_model(settings.reranker)})")
    if st.button(f"Switch back to {escape_md(back_to)}", icon=":material/undo:", disabled=bool(refused)):
        store.switch_back(collection)
        st.rerun()

# ---- training ------------------------------------------------------------------------------------------
st.subheader("Train on this collection's feedback")
need = settings.feedback_min_questions
running = training_running(settings)
if len(trainable) < need:
    st.text(f"Training is offered from {need} marked questions (RAG_FEEDBACK_MIN_QUESTIONS); {len(trainable)} so far. "
            "A quarter of them are held out to compare the old and the new reranker, and with fewer held-out "
            "questions one question would swing that comparison by more than .1 of MRR@5.")
if st.button("Train on this collection's feedback", disabled=running or len(trainable) < need or bool(refused),
             type="primary",
             icon=":material/model_training:",
             help=f"Fine-tunes a copy of the reranker in use on CPU within {settings.feedback_train_minutes:g} "
                  "minutes, then scores old and new on held-out questions and a public dev set"):
    try:
        start(settings, collection, background=True)
        time.sleep(0.5)
        st.rerun()
    except (NotEnoughFeedback, TrainingBusy, StoreError) as error:
        st.error(escape_md(str(error)))

history = jobs(settings, collection)


@st.fragment(run_every=2.0 if history and history[0].get("state") in RUNNING else None)
def latest_job() -> None:
    """The newest job of this collection, redrawn every 2 s while it runs (only this part of the page)."""
    current = jobs(settings, collection)
    if not current:
        return
    job = current[0]
    if job.get("state") not in RUNNING and history[0].get("state") in RUNNING:
        st.rerun()  # it finished since the page was drawn: the whole page again (its buttons, no more polling)
    st.text(f"Job {job['job']}: {job.get('state')}")
    if job.get("state") in RUNNING:
        total, step = job.get("total") or 0, job.get("step") or 0
        st.progress(step / total if total else 0.0, text=f"step {step} of {total}" if total else "preparing")
        elapsed = time.time() - (job.get("started_at") or time.time())
        st.text(f"{job.get('message', '')}  ({elapsed / 60:.1f} min so far)")
        return
    if job.get("message"):
        st.text(job["message"])
    result = job.get("result")
    if not result:
        return
    split = result["split"]
    st.text(f"Held out: {split['held_out']} questions, trained on {split['train']} ({split['rule']}); "
            f"{job.get('steps')} steps in {job.get('train_seconds', 0) / 60:.1f} min. Base: {job.get('base', '')}")
    st.dataframe(pd.DataFrame(result["rows"]), hide_index=True, width="stretch")
    st.caption(f"{result['metric']}, higher is better: the first stage alone, the reranker in use, the fine-tune.")
    new = job.get("reranker")
    if new and new != in_use:
        label = "Switch to the fine-tuned reranker" + ("" if result["better"] else " anyway")
        if st.button(label, key=f"switch-{job['job']}", icon=":material/swap_horiz:", disabled=bool(refused)):
            store.switch(collection, new, previous=None if chosen_reranker is None else in_use)
            st.rerun(scope="app")
    if new and state.may_administer():
        st.text("Its folder (the Compare page takes it as a side's reranker):")
        st.code(new, language=None)


latest_job()
