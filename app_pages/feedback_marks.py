"""The marks under an answer on the Ask page: the answer good or wrong, each chunk answering it or not.

Each mark is saved the moment it is clicked (rag.feedback.FeedbackStore, the same records ``POST /v1/feedback``
writes); clicking the chosen option again takes the mark back. Chunk names and questions are shown with
``st.text``: they are the user's documents' words, never Markdown.
"""

from __future__ import annotations

import re

import streamlit as st

from app_pages import state
from app_pages.rendering import escape_md
from rag.feedback import FeedbackError, FeedbackStore, mark_id
from rag.settings import Settings
from rag.store import StoreError

CHUNK_OPTIONS = {"answers it": "relevant", "does not": "irrelevant"}
ANSWER_OPTIONS = {"good": "good", "wrong": "wrong"}
PROBLEM = "feedback_problem"  # session_state key: why the last mark could not be saved


def _save(settings: Settings, result, key: str, chunk_id: str | None) -> None:
    """on_change: store (or, when deselected, remove) the mark the widget ``key`` now shows."""
    choice = st.session_state.get(key)
    store = FeedbackStore(settings)
    kind = "chunk" if chunk_id else "answer"
    signed_in = state.access_key()  # a key's marks stop counting when it is revoked (rag.mark_memory)
    by, key_id = (signed_in.name, signed_in.key_id) if signed_in is not None else ("app", "")
    try:
        if choice is None:
            store.delete(result.collection, [mark_id(result.collection, result.question, kind, chunk_id or "")])
        elif chunk_id:
            store.add(result.collection, result.question, chunk_id=chunk_id, label=CHUNK_OPTIONS[choice],
                      reranker=result.reranker, by=by, key_id=key_id)
        else:
            store.add(result.collection, result.question, answer=ANSWER_OPTIONS[choice],
                      chunk_ids=[c.chunk_id for c in result.chunks], reranker=result.reranker, by=by, key_id=key_id)
        st.session_state.pop(PROBLEM, None)
    except (FeedbackError, StoreError) as error:
        st.session_state[PROBLEM] = f"The mark could not be saved: {error}"


SIDES = {"left": ("relevant", "irrelevant"), "right": ("irrelevant", "relevant"), "both": ("relevant", "relevant"),
         "neither": ("irrelevant", "irrelevant")}  # the Compare page's answer: (left's lead chunk, right's)
_CITATION = re.compile(r"\[(\d{1,2})\]")


def lead_chunk(result):
    """The chunk an answer's lead cites (its first [n]); the top chunk when it cites none."""
    cited = _CITATION.search(result.answer or "")
    n = int(cited.group(1)) if cited else 1
    return result.chunks[n - 1] if 0 < n <= len(result.chunks) else result.chunks[0]


def _save_sides(settings: Settings, left, right, key: str) -> None:
    """on_change: the chunk each side's answer leads with, marked as answering the question or not."""
    choice = st.session_state.get(key)
    store = FeedbackStore(settings)
    chunks = [(lead_chunk(left), left), (lead_chunk(right), right)]
    try:
        for chunk, result in chunks:
            store.delete(result.collection, [mark_id(result.collection, result.question, "chunk", chunk.chunk_id)])
        if choice is not None:
            labels = dict(zip([c.chunk_id for c, _ in chunks], SIDES[choice]))  # one chunk both led with: once
            if chunks[0][0].chunk_id == chunks[1][0].chunk_id and choice in ("left", "right"):
                labels[chunks[0][0].chunk_id] = "relevant"
            for (chunk, result) in chunks:
                store.add(result.collection, result.question, chunk_id=chunk.chunk_id, label=labels[chunk.chunk_id],
                          reranker=result.reranker, by="app")
        st.session_state.pop(PROBLEM, None)
    except (FeedbackError, StoreError) as error:
        st.session_state[PROBLEM] = f"The mark could not be saved: {error}"


def side_judgement(left, right, settings: Settings) -> None:
    """Which side of a comparison answered the question: each side's lead chunk is marked as answering it or
    not, a judged question the Feedback page exports and trains on, as the Ask page's chunk marks are."""
    if not left.chunks or not right.chunks:
        return
    refused = state.why_read_only(left.collection)
    if refused:
        st.caption(f"Which side answered cannot be saved here: {escape_md(refused)}")
        return
    key = f"sides-{id(left)}-{id(right)}"  # the pair lives in the session: stable across reruns
    st.segmented_control("Which side answered the question?", list(SIDES), key=key,
                         on_change=_save_sides, args=(settings, left, right, key),
                         help="Marks the chunk each side's answer leads with as answering the question or not "
                              "(Feedback page: a judged question for evaluation and training)")
    problem = st.session_state.get(PROBLEM)
    if problem:
        st.error(escape_md(problem))
    elif st.session_state.get(key):
        where = ", ".join(f"{side}: {lead_chunk(r).citation}" for side, r in (("left", left), ("right", right)))
        st.caption(escape_md(f"Saved as a judged question ({where})."))


def marks(result, settings: Settings) -> None:
    """The mark widgets of one answer, in a collapsed expander so the answer stays the page's subject."""
    if not result.chunks:
        return
    base = f"fb-{id(result)}"  # the result object lives in the chat history: stable across reruns
    # Open once a mark is made: a click reruns the page, and a collapsed panel made every next mark two clicks
    marked = any(st.session_state.get(key) for key in [f"{base}-answer"]
                 + [f"{base}-chunk-{n}" for n in range(1, len(result.chunks) + 1)])
    with st.expander("Mark this answer", icon=":material/thumbs_up_down:", expanded=marked):
        refused = state.why_read_only(result.collection)
        if refused:  # marks train the reranker every user of the collection gets: a read-only session has none
            st.caption(f"Marks cannot be saved here: {escape_md(refused)}")
            return
        st.caption("Your marks are kept per collection (Feedback page) and can train this collection's reranker.")
        problem = st.session_state.get(PROBLEM)
        if problem:
            st.error(escape_md(problem))
        st.segmented_control("The answer", list(ANSWER_OPTIONS), key=f"{base}-answer",
                             on_change=_save, args=(settings, result, f"{base}-answer", None))
        for n, chunk in enumerate(result.chunks, 1):
            where = chunk.source + (f", page {chunk.page}" if chunk.page else "")
            words = " ".join(chunk.text.split()[:14])
            left, right = st.columns([3, 2])
            left.text(f"[{n}] {where}: {words}…")
            key = f"{base}-chunk-{n}"
            right.segmented_control(f"Chunk {n}", list(CHUNK_OPTIONS), key=key, label_visibility="collapsed",
                                    on_change=_save, args=(settings, result, key, chunk.chunk_id))
