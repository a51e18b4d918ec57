"""rerank-rag's web app: `streamlit run app.py` (or `make run`).

Pages (one file each under app_pages/): Ask, Compare, Library, Settings, Evaluate. They only present:
answers come from rag.RagPipeline, documents go in through ingest.Ingestor. The first page paints at once; the models load behind a spinner the
first time a page needs them and then stay loaded for every session of this server. Before any page: the key
this browser session signs in with (app_pages/login.py: once a key exists, or on a non-loopback bind) and this
process's claim on an embedded store that `rerank-rag serve` or an ingest may hold too (state.claim_store).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app_pages import login, state
from app_pages.rendering import escape_md

HERE = Path(__file__).resolve().parent


def page() -> None:
    """One browser session's run: the sign-in gate, the store's claim, then the page picked."""
    st.set_page_config(page_title="rerank-rag", page_icon=":material/swap_vert:", layout="wide")
    settings = state.settings_or_stop()
    key = login.gate(settings)  # stops at the sign-in form (or the refusal to serve) until the session has a key
    login.restrict(key)
    store = state.claim_store(settings)
    if store.blocked:  # an ingest in another process is writing: searching now would miss what it commits
        st.title("rerank-rag")
        st.warning(f"The documents cannot be read right now: {escape_md(store.blocked)}. Wait until it is done, "
                   "then try again.", icon=":material/hourglass_top:")
        st.button("Try again", type="primary")
        st.stop()

    pages = [
        st.Page(HERE / "app_pages" / "ask.py", title="Ask", icon=":material/chat:", default=True),
        st.Page(HERE / "app_pages" / "compare.py", title="Compare", icon=":material/compare_arrows:"),
        st.Page(HERE / "app_pages" / "library.py", title="Library", icon=":material/library_books:"),
        st.Page(HERE / "app_pages" / "settings.py", title="Settings", icon=":material/tune:"),
        st.Page(HERE / "app_pages" / "evaluate.py", title="Evaluate", icon=":material/analytics:"),
        st.Page(HERE / "app_pages" / "feedback.py", title="Feedback", icon=":material/thumbs_up_down:"),
    ]

    navigation = st.navigation(pages)
    with st.sidebar:
        st.caption("rerank-rag: document Q&A that shows what a cross-encoder reranker adds.")
        if store.shared_with:
            st.caption(f":material/lock: Read-only: {escape_md(state.shared_store_reason() or '')}.")
        login.sidebar(key)
    navigation.run()


if __name__ == "__main__":  # a session's run: Streamlit runs this file as __main__
    page()
else:
    # `streamlit run app.py` first imports this file and, finding `app` (Streamlit's st.App mode), serves it: the
    # same pages with the API's Host rule (api/guards.py) in front of the page and its websocket, since Streamlit
    # answers any Host and a DNS-rebinding page would otherwise drive a keyless loopback app.
    from starlette.middleware import Middleware

    from api.guards import HostGuard

    app = st.App(__file__, middleware=[Middleware(HostGuard, hosts=login.served_host_names)])
