"""The cited PDF page beside an answer: a button per cited PDF chunk opens its page as an image, the
sentences the answer quoted from it boxed (``rag.page_image``). Nothing is drawn until a button is pressed:
a chat of many answers costs no rendering on each rerun."""

from __future__ import annotations

import re

import streamlit as st

from app_pages import rendering as render, state
from rag.page_image import find_original, render_page
from rag.settings import Settings
from rag.store import StoreError
from rag.types import AskResult, ChunkHit

_CITED = re.compile(r"\[(\d{1,3})\]")


def cited_pdf_pages(result: AskResult) -> list[tuple[int, ChunkHit, list[str]]]:
    """(citation number, chunk, the sentences quoted from it) for each chunk of a PDF page the answer cites,
    in citation order."""
    cited = sorted({int(n) for n in _CITED.findall(result.answer or "")})
    out = []
    for n in cited:
        if not 1 <= n <= len(result.chunks):
            continue
        chunk = result.chunks[n - 1]
        if chunk.page is None or not chunk.source.lower().endswith(".pdf"):
            continue
        quotes = [chunk.text[s.start:s.end] for s in result.answer_spans if s.chunk == n]
        out.append((n, chunk, quotes))
    return out


@st.cache_data(max_entries=32, show_spinner=False)
def _page_png(path: str, version: str, page: int, quotes: tuple[str, ...]) -> tuple[bytes, int, bool]:
    """(PNG, the page drawn, whether the quotes were marked): the chunk's page, or the next one when the
    quote is on it (a chunk that runs over a page break is cited by its first page). ``version`` (the
    content's sha256) keys the cache with the file it reads."""
    image = render_page(path, page, list(quotes))
    if quotes and not image.marked:
        try:
            following = render_page(path, page + 1, list(quotes))
        except ValueError:  # the last page
            following = None
        if following is not None and following.marked:
            return following.png, page + 1, True
    return image.png, page, image.marked


@st.dialog("Cited page", width="large")
def _show_page(settings: Settings, collection: str, n: int, chunk: ChunkHit, quotes: list[str], llm: bool) -> None:
    st.text(f"[{n}] {chunk.citation}")
    try:
        record = state.knowledge_base(settings, collection).document(chunk.doc_id)
    except StoreError as error:
        st.error(f"The store cannot be reached, so the page cannot be shown: {render.escape_md(str(error))}",
                 icon=":material/error:")
        return
    path = find_original(settings, collection, chunk.doc_id, record.content_sha256 if record else None)
    if path is None:
        st.info("This PDF's file is not kept on this server (it was ingested before page images were kept, or "
                "by another server): ingest it again to see its pages.", icon=":material/info:")
        return
    try:
        png, page, marked = _page_png(str(path), record.content_sha256, chunk.page, tuple(quotes))
    except (OSError, ValueError) as error:  # the file or the page: its reason names neither path nor code
        st.error(f"The page cannot be drawn: {render.escape_md(str(error))}", icon=":material/error:")
        return
    except Exception:  # noqa: BLE001 - anything else (out of memory, a bug): a sentence, never a traceback
        st.error("The page cannot be drawn: its file could not be rendered on this server.", icon=":material/error:")
        return
    if marked:
        note = "The sentences the answer quoted are boxed in yellow."
    elif llm:
        note = "An LLM's answer is not a quotation, so nothing on the page is marked."
    elif quotes:
        note = "The quoted sentence could not be found in the page's text layer (a scan, or text laid out " \
               "differently), so nothing is marked."
    else:
        note = "The answer cites this page without quoting a sentence of it."
    st.caption(render.escape_md(f"{chunk.source}, page {page}. {note}"))
    st.image(png, width="stretch")


def page_buttons(result: AskResult, settings: Settings, number: int) -> None:
    """A button per cited PDF page, under the answer; ``number``: the answer's place in the chat (widget keys)."""
    pages = cited_pdf_pages(result)
    if not pages:
        return
    columns = st.columns(min(len(pages), 4))
    for i, (n, chunk, quotes) in enumerate(pages):
        with columns[i % len(columns)]:
            if st.button(render.escape_md(f"[{n}] {chunk.citation}"), key=f"cited-page-{number}-{n}",
                         icon=":material/picture_as_pdf:", type="tertiary",
                         help="Open the cited page as an image, the quoted sentences marked"):
                _show_page(settings, result.collection, n, chunk, quotes, result.answer_mode == "llm")
