"""rerank-rag's web app: `streamlit run app.py` (or `make run`).

Pages (one file each under app_pages/): Ask, Compare, Library, Settings, Evaluate. They only present:
answers come from rag.RagPipeline, documents go in through ingest.Ingestor. The first page paints at once; the models load behind a spinner the
first time a page needs them and then stay loaded for every session of this server.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

HERE = Path(__file__).resolve().parent

st.set_page_config(page_title="rerank-rag", page_icon=":material/swap_vert:", layout="wide")

pages = [
    st.Page(HERE / "app_pages" / "ask.py", title="Ask", icon=":material/chat:", default=True),
    st.Page(HERE / "app_pages" / "compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page(HERE / "app_pages" / "library.py", title="Library", icon=":material/library_books:"),
    st.Page(HERE / "app_pages" / "settings.py", title="Settings", icon=":material/tune:"),
    st.Page(HERE / "app_pages" / "evaluate.py", title="Evaluate", icon=":material/analytics:"),
]

navigation = st.navigation(pages)
with st.sidebar:
    st.caption("rerank-rag: document Q&A that shows what a cross-encoder reranker adds.")
navigation.run()
