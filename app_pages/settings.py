"""Settings: models, retrieval depth, chunking and the LLM, for this browser session; which models are loaded."""

from __future__ import annotations

from typing import get_args

import pandas as pd
import streamlit as st
from pydantic import ValidationError

from app_pages import rendering as render, state
from rag import catalog
from rag.rerank import NO_RERANK
from rag.settings import RETRIEVAL_MODES, RerankBlend, describe_invalid

st.title("Settings")
st.caption("Changes apply to this browser session's next question or ingest. The server's defaults come from "
           "RAG_* environment variables and .streamlit/secrets.toml.")

settings = state.settings_or_stop("The settings from the environment")
OTHER = "another model (folder or hub id)…"
admin = state.may_administer()  # the model and LLM fields reach the server's files and network


@st.cache_data(ttl=60, show_spinner=False)
def catalog_rows() -> list[dict]:
    return catalog.rows()


current = settings.reranker
if admin:
    names = [NO_RERANK] + [info.name for info in catalog.CATALOG] + [OTHER]
else:  # what the server runs already: another reranker would be read from its files or fetched from the hub
    names = list(dict.fromkeys([NO_RERANK, current, state.server_reranker(), *state.loaded_rerankers()]))
in_list = next((n for n in names if n.lower() == current.strip().lower()), None)

with st.form("settings"):
    st.subheader("Models")
    embed_model = st.text_input("Embedding model", settings.embed_model, disabled=not admin,
                                help="sentence-transformers name or folder. A collection answers only with the "
                                     "embedder it was built with." + ("" if admin else f" ({state.ADMIN_ONLY})"))
    pick, other = st.columns(2)
    with pick:
        reranker_choice = st.selectbox("Reranker", names, index=names.index(in_list or OTHER),
                                       format_func=render.model_label,  # a folder by its name, never the server's path
                                       help=f"'{NO_RERANK}' turns reranking off. The catalog below says which "
                                            "are available offline here." + ("" if admin else " Others load "
                                                                            f"{state.ADMIN_ONLY}."))
    with other:
        reranker_path = st.text_input("…or a local folder / hub id", "" if in_list else current, disabled=not admin,
                                      help=f"Used when the list says '{OTHER}'" + ("" if admin else
                                                                                   f" ({state.ADMIN_ONLY})"))
    st.subheader("Retrieval")
    retrieval = st.radio("First stage", RETRIEVAL_MODES, index=RETRIEVAL_MODES.index(settings.retrieval),
                         horizontal=True, format_func={"hybrid": "hybrid (dense + BM25, fused)", "dense": "dense "
                                                       "(embeddings)", "bm25": "BM25 (words)"}.get,
                         help="Which search finds the candidates that the reranker reorders")
    a, b, c, d = st.columns(4)
    top_k = a.number_input("top_k: candidates retrieved", 1, 200, settings.top_k)
    top_n = b.number_input("top_n: chunks kept for the answer", 1, 50, settings.top_n)
    weight = d.number_input("Rerank weight", 0.0, 1.0, float(settings.rerank_weight), step=0.05, format="%.2f",
                            help="The reranker's share of the final order (the blend below says how it mixes with "
                                 "the retrieval score). 1 = the rerank score alone.")
    e, f = st.columns(2)
    depth = e.number_input("Rerank depth: candidates the reranker scores", 1, 200, settings.rerank_depth,
                           help="The first stage's top-d are reranked, the rest keep their order below them")
    blends = list(get_args(RerankBlend))
    blend = f.selectbox("Blend", blends, index=blends.index(settings.rerank_blend),
                        help="linear: logits and retrieval scores min-max scaled, then mixed; rrf: their ranks fused; "
                             "confident: linear, its weight times the reranker's confidence in its best candidate")
    low = c.number_input("Warn when unanswered is this likely", 0.0, 1.0, value=settings.abstain_threshold,
                         step=0.05, format="%.2f", placeholder="fitted",
                         help="The probability that the documents do not answer at which the answer says so "
                              "instead of quoting; empty = the operating point fitted with the model")
    st.subheader("Chunking (applies to the next ingest)")
    a, b = st.columns(2)
    chunk_size = a.number_input("Chunk size (tokens)", 32, 8192, settings.chunk_size, step=10)
    chunk_overlap = b.number_input("Chunk overlap (tokens)", 0, 2048, settings.chunk_overlap, step=5)
    st.subheader("LLM (any OpenAI-compatible server)")
    a, b = st.columns(2)
    base_url = a.text_input("Base URL", settings.openai_base_url or "", disabled=not admin,
                            placeholder="empty = api.openai.com; e.g. http://localhost:11434/v1 for Ollama")
    llm_model = b.text_input("Model", settings.llm_model, disabled=not admin,  # a server may load what is named
                             help=None if admin else state.ADMIN_ONLY)
    session_key = a.text_input(
        "API key for this base URL (optional)", type="password", value="", disabled=not admin,
        help="The server's own key is only ever sent to the server's configured base URL. For another base URL, "
             "give that server's key here: it is kept for this browser session only and never shown.")
    if settings.openai_api_key and settings.openai_api_key.get_secret_value():
        st.caption(":material/key: The server has an API key (from OPENAI_API_KEY or .streamlit/secrets.toml); it is "
                   "never shown, and it is sent only to the server's configured base URL.")
    else:
        st.caption(":material/key: No API key is set: set OPENAI_API_KEY in the environment or .streamlit/secrets.toml. "
                   "Without a key or a base URL, answers are extractive.")
    applied = st.form_submit_button("Apply", type="primary")

if applied:
    reranker_name = (reranker_path.strip() or current) if reranker_choice == OTHER else reranker_choice
    if not admin:  # what the disabled fields say, whatever a session sends: the server's own models and LLM
        embed_model, base_url, session_key = settings.embed_model, settings.openai_base_url or "", ""
        llm_model = settings.llm_model
        reranker_name = reranker_choice if state.may_load_reranker(reranker_choice) else current
    try:
        new = state.apply_overrides({
            "embed_model": embed_model.strip(), "reranker": reranker_name, "retrieval": retrieval, "top_k": int(top_k),
            "top_n": int(top_n), "rerank_weight": float(weight), "abstain_threshold": None if low is None else float(low),
            "rerank_depth": int(depth), "rerank_blend": blend,
            "chunk_size": int(chunk_size), "chunk_overlap": int(chunk_overlap), "openai_base_url": base_url.strip() or None,
            "llm_model": llm_model.strip(),
            # only when given: an empty override would also hide the server's key from its own base URL
            **({"openai_api_key": session_key.strip()} if session_key.strip() else {}),
        })
    except ValidationError as error:
        st.error(f"Not applied: {render.escape_md(describe_invalid(error))}")
    else:
        error = None
        try:
            error = state.load_models(new)
        except Exception as failure:  # noqa: BLE001 - any embedder failure is reported in words
            error = f"embedding model '{new.embed_model}': {failure}"
        if error:
            st.error(f"Applied, but a model cannot be loaded, so questions will fail to rerank: {render.escape_md(str(error))}")
        else:
            st.success(f"Applied: {new.retrieval} first stage, reranker {render.escape_md(render.model_label(new.reranker))}, "
                       f"top_k {new.top_k}, top_n {new.top_n}, "
                       f"LLM {'on' if new.llm_configured else 'off (extractive answers)'}.")
        settings = new

if st.button("Reset to the server's defaults"):
    st.session_state.pop(state.OVERRIDES, None)
    st.rerun()

st.subheader("Loaded models")
loaded = state.loaded_models()
if loaded:
    st.dataframe(pd.DataFrame([{"role": m.role, "name": render.model_label(m.name), "load time (s)": m.seconds,
                                "engine": m.backend, "loaded at": m.loaded_at,
                                **({"loaded from": m.path} if admin else {})}  # the server's folders: admin only
                               for m in loaded]),
                 hide_index=True, width="stretch")
else:
    st.caption("No model loaded yet: they load with the first question.")

with st.expander("Reranker catalog"):
    st.dataframe(pd.DataFrame(catalog_rows())[["name", "kind", "params", "languages", "available", "where",
                                                "notes"]], hide_index=True, width="stretch")
