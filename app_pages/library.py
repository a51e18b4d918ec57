"""Library: pick or create a collection, upload many files at once and ingest them, list and delete documents."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from app_pages import rendering as render, state
from ingest.loaders import SUPPORTED_SUFFIXES
from ingest.pipeline import WRITE_LOCK, FileResult, Ingestor, SourceFile
from rag.embedders.models import ModelUnavailableError
from rag.store import StoreError, collection_names

LAST_INGEST = "last_ingest"  # session_state key: the per-file results of this session's last ingest
NOTICE = "library_notice"  # session_state key: (kind, message) of the last collection change
DELETED = "library_deleted"  # session_state key: (kind, message) of the last delete

st.title("Library")

settings = state.settings_or_stop()
try:
    state.prepare(settings)
except ModelUnavailableError as error:
    st.error(f"The embedding model could not be loaded: {render.escape_md(str(error))}")
    st.stop()


def show_line(result: FileResult) -> None:
    text = render.escape_md(result.line())
    if result.status == "ok":
        st.success(text, icon=":material/check_circle:")
    elif result.status == "skipped":
        st.info(text, icon=":material/skip_next:")
    else:
        st.error(text, icon=":material/error:")


# ---- collections ---------------------------------------------------------------------------------
def create_collection() -> None:
    name = st.session_state.get("new_collection", "").strip()
    if not name or not state.may_create():
        return
    try:
        state.knowledge_base(state.session_settings(), name)
    except StoreError as error:
        st.session_state[NOTICE] = ("error", f"Could not create the collection: {error}")  # escaped when shown
        return
    st.session_state[state.COLLECTION] = name
    st.session_state["new_collection"] = ""
    st.session_state[NOTICE] = ("success", f"Created the collection '{name}'; new documents go there.")


try:
    names = [name for name in collection_names(settings) if state.may_open(name)]  # the session key's only
except StoreError as error:
    st.error(f"The store cannot be reached: {render.escape_md(str(error))}")
    st.stop()
current = settings.collection
if current not in names:
    names = sorted([*names, current])

pick, create = st.columns([2, 1], vertical_alignment="bottom")
with pick:
    chosen = st.selectbox("Collection", names, index=names.index(current),
                          help="The collection this browser session asks and ingests into")
    if chosen != current:
        st.session_state[state.COLLECTION] = chosen
        st.rerun()
if state.may_create():  # an open app, or a write key for every collection
    with create, st.form("create_collection", clear_on_submit=False, border=False):
        st.text_input("New collection", key="new_collection", placeholder="e.g. contracts")
        st.form_submit_button("Create", on_click=create_collection)

notice = st.session_state.pop(NOTICE, None)
if notice:
    getattr(st, notice[0])(render.escape_md(notice[1]))

# ---- upload and ingest ---------------------------------------------------------------------------
st.subheader(f"Add documents to '{render.escape_md(current)}'")
read_only = state.why_read_only(current)  # no write scope, or another process serves this store too
if read_only:
    st.info(f"Uploads and deletes are off: {render.escape_md(read_only)}.", icon=":material/lock:")
uploads = [] if read_only else st.file_uploader(
    "PDF (scans too, read by OCR), images (PNG, JPEG, TIFF), Word, HTML, Markdown or text files", type=[s.lstrip(".") for s in SUPPORTED_SUFFIXES],
    accept_multiple_files=True, key="uploader",
    help=f"Each file up to {settings.max_file_mb:g} MB. Re-uploading an unchanged file skips it; a changed one "
         "replaces the old version.",
)
if not read_only and st.button(f"Ingest {len(uploads)} file{'s' if len(uploads) != 1 else ''}" if uploads else "Ingest",
             type="primary", disabled=not uploads):
    files = [SourceFile(upload.name, data=upload.getvalue()) for upload in uploads]
    results: list[FileResult] = []
    # One ingest writes at a time (ingest.pipeline.WRITE_LOCK, reentrant): "Waiting…" only while another holds it
    reading = f"Reading {render.escape_md(files[0].name)} (file 1 of {len(files)})…"
    held = WRITE_LOCK.acquire(blocking=False)
    waited_s = 0.0
    try:
        progress = st.progress(0.0, text=reading if held else "Waiting for another session's ingest to finish…")
        if not held:
            since = time.perf_counter()
            held = WRITE_LOCK.acquire()
            waited_s = time.perf_counter() - since
            progress.progress(0.0, text=reading)

        def on_result(result: FileResult) -> None:
            results.append(result)
            show_line(result)
            done = len(results)
            following = f"; reading {render.escape_md(files[done].name)}" if done < len(files) else ""
            progress.progress(done / len(files), text=f"Ingested {done} of {len(files)} files (last: "
                              f"{render.escape_md(result.source)}){following}…")

        from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

        script_context = get_script_run_ctx()

        def on_progress(source: str, step: str, done: int, total: int) -> None:
            # Called from the ingest's parsing thread: it draws on this page once given the page's script context.
            # A page read by OCR takes seconds, so each one shows (a 50-page scan is minutes).
            add_script_run_ctx(None, script_context)
            progress.progress(min(1.0, (len(results) + done / max(total, 1)) / len(files)),
                              text=f"{render.escape_md(source)} (file {min(len(results) + 1, len(files))} of "
                              f"{len(files)}): {done:,} of {total:,} {step}…")

        Ingestor(settings, current, embedder=state.embedder(settings)).ingest(files, on_result=on_result,
                                                                              on_progress=on_progress)
        failed = sum(r.status == "failed" for r in results)
        progress.progress(1.0, text=f"Done: {len(results) - failed} of {len(results)} files ingested or unchanged"
                                    + (f", {failed} failed" if failed else ""))
        if waited_s:
            st.caption(f"Waited {waited_s:.0f} s for another session's ingest to finish first.")
    except StoreError as error:
        st.error(f"The ingest stopped: {render.escape_md(str(error))}")
    finally:
        if held:  # also when the run is stopped (the user left the page): the next ingest must not wait forever
            WRITE_LOCK.release()
    st.session_state[LAST_INGEST] = results
elif st.session_state.get(LAST_INGEST):
    st.caption("Last ingest in this session")
    for result in st.session_state[LAST_INGEST]:
        show_line(result)

# ---- documents -----------------------------------------------------------------------------------
st.subheader(f"Documents in '{render.escape_md(current)}'")
try:
    documents = state.knowledge_base(settings).documents()
except StoreError as error:
    st.error(f"Could not list the documents: {render.escape_md(str(error))}")
    st.stop()


def delete_document(doc_id: str, source: str) -> None:
    if state.why_read_only(state.session_settings().collection):
        return
    try:
        gone = state.knowledge_base(state.session_settings()).delete_document(doc_id)
    except StoreError as error:
        st.session_state[DELETED] = ("error", f"Could not delete {source}: {error}")  # escaped when shown
        return
    st.session_state[DELETED] = ("success", f"Deleted {source} ({gone} chunks).")


deleted = st.session_state.pop(DELETED, None)
if deleted:
    getattr(st, deleted[0])(render.escape_md(deleted[1]))


if not documents:
    st.info("No documents yet: upload some above.", icon=":material/info:")
else:
    st.dataframe(
        pd.DataFrame([{"source": d.source, "pages": d.pages, "chunks": d.chunks, "ingested at": d.ingested_at,
                       "size (KB)": round(d.size_bytes / 1024, 1)} for d in documents]),
        hide_index=True, width="stretch",
        column_config={"source": st.column_config.TextColumn("source", width="large")},
    )
    st.caption(f"{len(documents)} documents, {sum(d.chunks for d in documents)} chunks")
    by_source = {d.source: d for d in documents}
if documents and not read_only:
    doomed, button = st.columns([2, 1], vertical_alignment="bottom")
    with doomed:
        target = st.selectbox("Delete a document", list(by_source), index=None, placeholder="Choose a document")
    with button:
        st.button("Delete", disabled=target is None, icon=":material/delete:",
                  on_click=(lambda: delete_document(by_source[target].doc_id, target)) if target else None)
