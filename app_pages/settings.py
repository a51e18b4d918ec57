"""Settings: models, retrieval depth, chunking and the LLM, for this browser session; which models are loaded."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from pydantic import ValidationError

from app_pages import _common as ui
from rag import catalog
from rag.rerank import NO_RERANK
from rag.settings import describe_invalid

st.title("Settings")
st.caption("Changes apply to this browser session's next question or ingest. The server's defaults come from "
           "RAG_* environment variables and .streamlit/secrets.toml.")

settings = ui.settings_or_stop("The settings from the environment")
OTHER = "another model (folder or hub id)…"


@st.cache_data(ttl=60, show_spinner=False)
def catalog_rows() -> list[dict]:
    return catalog.rows()


names = [NO_RERANK] + [info.name for info in catalog.CATALOG] + [OTHER]
current = settings.reranker
in_list = next((n for n in names if n.lower() == current.strip().lower()), None)

with st.form("settings"):
    st.subheader("Models")
    embed_model = st.text_input("Embedding model", settings.embed_model,
                                help="sentence-transformers name or folder. A collection answers only with the "
                                     "embedder it was built with.")
    pick, other = st.columns(2)
    with pick:
        reranker_choice = st.selectbox("Reranker", names, index=names.index(in_list or OTHER),
                                       help=f"'{NO_RERANK}' turns reranking off. The catalog below says which "
                                            "are available offline here.")
    with other:
        reranker_path = st.text_input("…or a local folder / hub id", "" if in_list else current,
                                      help=f"Used when the list says '{OTHER}'")
    st.subheader("Retrieval")
    a, b, c, d = st.columns(4)
    top_k = a.number_input("top_k: candidates retrieved", 1, 200, settings.top_k)
    top_n = b.number_input("top_n: chunks kept for the answer", 1, 50, settings.top_n)
    weight = d.number_input("Rerank weight", 0.0, 1.0, float(settings.rerank_weight), step=0.1, format="%.2f",
                            help="Final order = weight × rerank + (1 − weight) × retrieval score, both min-max "
                                 "normalised over the candidates. 1 = the rerank score alone.")
    low = c.number_input("Low-confidence threshold (rerank score)", value=float(settings.low_confidence_score),
                         step=0.05, format="%.2f")
    st.subheader("Chunking (applies to the next ingest)")
    a, b = st.columns(2)
    chunk_size = a.number_input("Chunk size (tokens)", 32, 8192, settings.chunk_size, step=10)
    chunk_overlap = b.number_input("Chunk overlap (tokens)", 0, 2048, settings.chunk_overlap, step=5)
    st.subheader("LLM (any OpenAI-compatible server)")
    a, b = st.columns(2)
    base_url = a.text_input("Base URL", settings.openai_base_url or "",
                            placeholder="empty = api.openai.com; e.g. http://localhost:11434/v1 for Ollama")
    llm_model = b.text_input("Model", settings.llm_model)
    if settings.openai_api_key and settings.openai_api_key.get_secret_value():
        st.caption(":material/key: An API key is set (from OPENAI_API_KEY or .streamlit/secrets.toml); it is never shown here.")
    else:
        st.caption(":material/key: No API key is set: set OPENAI_API_KEY in the environment or .streamlit/secrets.toml. "
                   "Without a key or a base URL, answers are extractive.")
    applied = st.form_submit_button("Apply", type="primary")

if applied:
    reranker_name = (reranker_path.strip() or current) if reranker_choice == OTHER else reranker_choice
    try:
        new = ui.apply_overrides({
            "embed_model": embed_model.strip(), "reranker": reranker_name, "top_k": int(top_k),
            "top_n": int(top_n), "rerank_weight": float(weight), "low_confidence_score": float(low),
            "chunk_size": int(chunk_size), "chunk_overlap": int(chunk_overlap), "openai_base_url": base_url.strip() or None,
            "llm_model": llm_model.strip(),
        })
    except ValidationError as error:
        st.error(f"Not applied: {ui.escape_md(describe_invalid(error))}")
    else:
        error = None
        try:
            error = ui.load_models(new)
        except Exception as failure:  # noqa: BLE001 - any embedder failure is reported in words
            error = f"embedding model '{new.embed_model}': {failure}"
        if error:
            st.error(f"Applied, but a model cannot be loaded, so questions will fail to rerank: {ui.escape_md(str(error))}")
        else:
            st.success(f"Applied: reranker {ui.escape_md(ui.model_label(new.reranker))}, top_k {new.top_k}, top_n {new.top_n}, "
                       f"LLM {'on' if new.llm_configured else 'off (extractive answers)'}.")
        settings = new

if st.button("Reset to the server's defaults"):
    st.session_state.pop(ui.OVERRIDES, None)
    st.rerun()

st.subheader("Loaded models")
loaded = ui.loaded_models()
if loaded:
    st.dataframe(pd.DataFrame([{"role": m.role, "name": ui.model_label(m.name), "load time (s)": m.seconds,
                                "backend": m.backend, "loaded at": m.loaded_at, "loaded from": m.path}
                               for m in loaded]),
                 hide_index=True, width="stretch")
else:
    st.caption("No model loaded yet: they load with the first question.")

with st.expander("Reranker catalog"):
    st.dataframe(pd.DataFrame(catalog_rows())[["name", "kind", "params", "languages", "available", "where",
                                                "notes"]], hide_index=True, width="stretch")
