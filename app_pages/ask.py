"""Ask: a chat over the current collection; each answer streams in, cites [n], and shows its chunks."""

from __future__ import annotations

import time

import streamlit as st

from app_pages import feedback_marks, page_preview, rendering as render, state
from app_pages.examples import EXAMPLES
from rag.embedders.models import ModelUnavailableError
from rag.store import StoreError

CHAT = "chat"  # session_state key: this browser session's questions and results

st.title("Ask your documents")
st.caption("Each answer cites the chunks it used as [n]; the table under it shows how the reranker "
           "reordered the first retrieval. Follow-up questions read the chat before them.")

settings = state.settings_or_stop()
history: list[dict] = st.session_state.setdefault(CHAT, [])

try:
    rerank_error = state.prepare(settings)
except ModelUnavailableError as error:
    st.error(f"The embedding model could not be loaded: {render.escape_md(str(error))}")
    st.stop()
# Drawn once the models and the first start's sample documents are in: a question sent earlier would rerun the
# page, stop that ingest between two files and be answered over part of the samples.
question = st.chat_input("Ask a question about your documents", max_chars=settings.max_question_chars)
DOCUMENTS = "ask_documents"  # session_state key: the documents this chat asks (none chosen: all of them)
try:
    sources = sorted({record.source for record in state.knowledge_base(settings).documents()})
except StoreError:  # the store is down: the question's own error says so, in plain words, when it is asked
    sources = []
chosen = st.multiselect("Ask only these documents", sources, key=DOCUMENTS, placeholder="All documents",
                        help="Leave empty to ask the whole collection; pick one or a few to search only them "
                        "(both the embedding and the word search are filtered)")
if rerank_error:
    st.error(f"The reranker could not be loaded, so answers below are NOT reranked (retrieval order only). "
             f"Fix it on the Settings page. Reason: {render.escape_md(str(rerank_error))}", icon=":material/error:")


def show(turn: dict, number: int) -> None:
    result = turn["result"]
    with st.chat_message("user"):
        st.text(result.question)
    with st.chat_message("assistant"):
        show_answer(result, turn["settings"], number)


def show_answer(result, settings, number: int) -> None:
    """One answer; ``number``: its place in the chat (keys its widgets)."""
    st.markdown(render.badges(result))
    st.markdown(render.answer_markdown(result.answer))
    # Streamlit's code block carries a copy-to-clipboard button; shown as plain text, citations and all
    with st.popover("Copy", icon=":material/content_copy:", help="The answer as plain text, to copy"):
        st.code(result.answer, language=None, wrap_lines=True)
    searched = render.searched_line(result)
    if searched:
        st.caption(f":material/search: {searched}")
    render.answer_notices(result, settings)
    if result.chunks:
        st.caption("Sources")
        st.markdown(render.sources_line(result.chunks))
        page_preview.page_buttons(result, settings, number)
        render.chunk_table(result)
    render.timings(result)
    feedback_marks.marks(result, settings)  # answer good/wrong, each chunk answers it or not (Feedback page)


for number, turn in enumerate(history):
    show(turn, number)

PENDING = "pending_question"  # an example question clicked below
question = question or st.session_state.pop(PENDING, None)
if not history and not question and state.samples_loaded(settings):
    st.caption("New here? The sample documents (an e-bike maker's handbook, FAQ, warranty, returns guide and "
               "display codes) are in this collection: ask anything about them, or try one of these. On the first "
               "three the first retrieval ranks a wrong chunk first and the reranker fixes it (the ▲ in the table "
               "under the answer); on the last it was right already.")
    # Two to a row: four in one row cut each question short on a laptop's screen
    for row in range(0, len(EXAMPLES), 2):
        for column, example in zip(st.columns(2), EXAMPLES[row:row + 2]):
            column.button(example.question, key=f"example-{example.question}", help=example.shows,
                          on_click=st.session_state.__setitem__, args=(PENDING, example.question), width="stretch")

if question and question.strip():
    with st.chat_message("user"):
        st.text(question)
    with st.chat_message("assistant"):
        placeholder = st.empty()
        placeholder.caption("Searching…")
        streamed: list[str] = []
        last_paint = [0.0]

        def on_token(piece: str) -> None:
            streamed.append(piece)
            if time.perf_counter() - last_paint[0] > 0.05:  # repaint at most 20 times a second
                placeholder.markdown(render.answer_markdown("".join(streamed)) + " ▌")
                last_paint[0] = time.perf_counter()

        try:
            result = state.pipeline(settings).ask(question, rerank=rerank_error is None, on_token=on_token,
                                                  history=[turn["result"] for turn in history], asker=state.asker(),
                                                  sources=[s for s in chosen if s in sources] or None)
        except (StoreError, ModelUnavailableError, ValueError) as error:
            placeholder.empty()
            st.error(f"The question could not be answered: {render.escape_md(str(error))}")
        else:
            placeholder.empty()
            show_answer(result, settings, len(history))
            history.append({"result": result, "settings": settings})

# Drawn after the answer of this run is in the history: drawn before it, "Download chat" saved the chat without
# the answer just given (its data is fixed when the button is drawn).
if history:
    new_chat, download, _ = st.columns([1, 1, 3])
    new_chat.button("New chat", icon=":material/add_comment:", help="Forget this chat: the next question starts "
                    "afresh", on_click=history.clear)
    download.download_button("Download chat", render.chat_markdown([turn["result"] for turn in history]),
                             file_name="chat.md", mime="text/markdown", icon=":material/download:",
                             help="The questions, answers, their sources and the queries searched, as Markdown")
