"""What the pages share: per-session settings, models loaded once per server, the first-start sample ingest,
and the renderers of an :class:`~rag.types.AskResult` (answer, chunk table, timings).

Pages compute nothing of their own: every rank, score, movement and timing comes from ``AskResult``.
Document text and model output are shown as text: dataframe cells, ``st.text``, or markdown with every
markdown character escaped, never HTML.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st
from pydantic import ValidationError

from rag.models import ModelUnavailableError, load_embedder
from rag.pipeline import RagPipeline
from rag.rerank import NO_RERANK, load_reranker
from rag.settings import Settings, describe_invalid
from rag.store import KnowledgeBase, StoreError
from rag.types import AskResult, ChunkHit

REPO_ROOT = Path(__file__).resolve().parent.parent
# The documents a new user can ask about at once; RAG_SAMPLE_DIR="" turns the first-start ingest off.
DEFAULT_SAMPLE_DIR = REPO_ROOT / "data" / "sample"
SAMPLES_MARKER = ".samples-ingested"

OVERRIDES = "settings_overrides"  # session_state key: this browser session's changes to the settings
COLLECTION = "collection"  # session_state key: the collection this session reads and writes


# ---- settings ------------------------------------------------------------------------------------
def settings_errors() -> str | None:
    """Why the environment's settings are invalid, in plain words (None when they are fine)."""
    try:
        Settings()
    except ValidationError as error:
        return describe_invalid(error)
    return None


def settings_or_stop(what: str = "The settings") -> Settings:
    """This session's settings; when the environment's are invalid, the page says why and stops."""
    problem = settings_errors()
    if problem:
        st.error(f"{what} are invalid: {escape_md(problem)}")
        st.stop()
    return session_settings()


def session_settings() -> Settings:
    """The server's settings (env, secrets) with this browser session's changes from the Settings page."""
    overrides = dict(st.session_state.get(OVERRIDES, {}))
    if COLLECTION in st.session_state:
        overrides["collection"] = st.session_state[COLLECTION]
    return Settings(**overrides)


def apply_overrides(changes: dict[str, Any]) -> Settings:
    """Validate and keep ``changes`` for this session; raises ValidationError with the reason."""
    merged = {**st.session_state.get(OVERRIDES, {}), **changes}
    settings = Settings(**merged)  # validates (types, ranges, overlap below size)
    st.session_state[OVERRIDES] = merged
    return settings


# ---- models: loaded once per server --------------------------------------------------------------
@dataclass(frozen=True)
class LoadedModel:
    role: str  # "embedder" | "reranker"
    name: str
    path: str
    backend: str
    seconds: float
    loaded_at: str


@st.cache_resource(show_spinner=False)
def _loaded_models() -> dict[tuple[str, str, str], LoadedModel]:
    return {}


@st.cache_resource(show_spinner=False)
def _model_lock() -> threading.Lock:
    return threading.Lock()


def _load(role: str, name: str, device: str, loader: Callable[[], Any]) -> Any:
    """Load through the process-wide caches of rag.models/rag.rerank, recording where from and how long."""
    registry = _loaded_models()
    key = (role, name, device)
    if key in registry:
        return loader()  # cached: returns at once
    with _model_lock():
        started = time.perf_counter()
        model = loader()
        seconds = time.perf_counter() - started
        if key not in registry and model is not None:
            registry[key] = LoadedModel(
                role, name, str(getattr(model, "path", name)), str(getattr(model, "backend", "torch")),
                round(seconds, 2), time.strftime("%H:%M:%S"),
            )
    return model


def loaded_models() -> list[LoadedModel]:
    return list(_loaded_models().values())


def embedder(settings: Settings):
    return _load("embedder", settings.embed_model, settings.device,
                 lambda: load_embedder(settings.embed_model, settings.device, settings.embed_batch_size))


def reranker(settings: Settings):
    """The configured reranker, or None when the setting is 'none'; raises ModelUnavailableError (never falls back)."""
    if settings.reranker.strip().lower() == NO_RERANK:
        return None
    return _load("reranker", settings.reranker, settings.device,
                 lambda: load_reranker(settings.reranker, settings.device, settings.rerank_max_length))


def rerank_enabled(settings: Settings) -> bool:
    return settings.reranker.strip().lower() != NO_RERANK


def load_models(settings: Settings) -> str | None:
    """Load the embedder and reranker behind a spinner; returns the reranker's load error in plain words.

    The embedder failing is fatal for the page (shown by the caller); the reranker failing is reported
    and the caller shows retrieval-only results labelled as such, never silently.
    """
    with st.spinner("Loading models (first time only, about 10 s)…"):
        embedder(settings)
        try:
            reranker(settings)
        except ModelUnavailableError as error:
            return str(error)
        except Exception as error:  # noqa: BLE001 - a broken model folder fails in many ways
            return f"reranker '{settings.reranker}' could not be loaded: {type(error).__name__}: {error}"
    return None


def pipeline(settings: Settings) -> RagPipeline:
    return RagPipeline(settings)


# ---- the knowledge base --------------------------------------------------------------------------
@st.cache_resource(show_spinner=False)
def ingest_lock() -> threading.Lock:
    """One ingest at a time per server: an ingest starts with a repair that would sweep the chunks
    another session's ingest has written but not yet committed."""
    return threading.Lock()


def knowledge_base(settings: Settings, name: str | None = None) -> KnowledgeBase:
    return KnowledgeBase(settings, name, embed_model=embedder(settings).name)


def sample_dir() -> Path | None:
    raw = os.environ.get("RAG_SAMPLE_DIR")
    if raw is None:
        return DEFAULT_SAMPLE_DIR
    return Path(raw).expanduser() if raw.strip() else None


def ingest_samples_on_first_start(settings: Settings) -> None:
    """On the first start (empty default collection, samples never ingested), ingest the sample documents."""
    from ingest.pipeline import Ingestor, expand_paths

    folder = sample_dir()
    if folder is None or not folder.is_dir():
        return
    base = Settings(**st.session_state.get(OVERRIDES, {}))  # the default collection, not this session's
    marker = Path(base.data_dir).expanduser() / SAMPLES_MARKER
    if marker.exists():
        return
    files = list(expand_paths([folder]))
    if not files:
        return
    with ingest_lock():
        if marker.exists():  # another session did it while this one waited
            return
        kb = knowledge_base(base)
        if not kb.documents():
            with st.status(f"First start: adding {len(files)} sample documents…", expanded=True) as status:
                results = Ingestor(base, base.collection, embedder=embedder(base)).ingest(
                    files, on_result=lambda r: st.text(r.line()))
                failed = [r for r in results if r.status == "failed"]
                status.update(label=f"Added the sample documents ({len(results) - len(failed)} of {len(results)})",
                              state="error" if failed else "complete", expanded=bool(failed))
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))


def samples_loaded(settings: Settings) -> bool:
    """Whether this session's collection holds the shipped sample documents (so their example questions fit)."""
    from ingest.pipeline import expand_paths

    if sample_dir() != DEFAULT_SAMPLE_DIR or not DEFAULT_SAMPLE_DIR.is_dir():
        return False
    try:
        sources = {record.source for record in knowledge_base(settings).documents()}
    except StoreError:
        return False
    return any(file.name in sources for file in expand_paths([DEFAULT_SAMPLE_DIR]))


def prepare(settings: Settings) -> str | None:
    """Everything a querying page needs: models loaded, samples ingested. Returns the reranker's load error."""
    rerank_error = load_models(settings)
    try:
        ingest_samples_on_first_start(settings)
    except StoreError as error:
        st.error(f"Could not add the sample documents: {escape_md(str(error))}")
    return rerank_error


# ---- rendering ------------------------------------------------------------------------------------
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")
_CITATION = re.compile(r"\\\[(\d{1,2})\\\]")


def escape_md(text: str) -> str:
    """Markdown-escape ``text`` so that it renders as the literal text (no links, images, HTML, LaTeX)."""
    return _MD_SPECIAL.sub(r"\\\1", text).replace("\n", "  \n")


def answer_markdown(answer: str) -> str:
    """The answer, escaped, with its [n] citations in bold (they name the rows of the chunk table)."""
    return _CITATION.sub(r"**[\1]**", escape_md(answer))


def model_label(name: str | None) -> str:
    """A model name for display: a local folder by its last part, hub ids and catalog names as they are."""
    if not name:
        return ""
    path = Path(name).expanduser()
    return path.name if path.is_absolute() or name.startswith((".", "~")) else name


def badges(result: AskResult) -> str:
    """Markdown badges: the answer mode (LLM / extractive) and whether the chunks were reranked."""
    if result.answer_mode == "llm":
        mode = f":blue-badge[:material/smart_toy: LLM answer · {escape_md(result.llm_model or '')}]"
    else:
        mode = ":gray-badge[:material/format_quote: Extractive answer · quoted from the passages]"
    if result.reranked:
        blend = f", weight {result.rerank_weight:g}" if result.blended else ""
        rerank = f":green-badge[:material/swap_vert: reranked by {escape_md(model_label(result.reranker))}{blend}]"
    else:
        rerank = ":orange-badge[:material/horizontal_rule: not reranked]"
    return f"{mode} {rerank}"


def answer_notices(result: AskResult, settings: Settings) -> None:
    """The LLM's failure and the low-confidence warning, next to the answer where the user looks."""
    if result.error:
        st.error(f"The LLM could not answer, so this is an extractive answer from the passages instead. "
                 f"Reason: {escape_md(result.error)}", icon=":material/error:")
    if result.low_confidence:
        best = result.best_rerank_score
        st.warning(f"The documents may not contain the answer: the best rerank score is {best:.3f}, below "
                   f"the threshold of {settings.low_confidence_score:g}.", icon=":material/warning:")
    if not result.chunks:
        st.info("The collection has no documents yet: add some on the Library page.", icon=":material/info:")


def sources_line(chunks: list[ChunkHit]) -> str:
    return "  \n".join(f"**[{n}]** {escape_md(chunk.citation)}" for n, chunk in enumerate(chunks, 1))


def chunk_frame(chunks: list[ChunkHit]) -> pd.DataFrame:
    return pd.DataFrame([
        {
            "cite": f"[{n}]",
            "rank": c.final_rank,
            "before rerank": c.retrieval_rank,
            "moved": c.movement,
            "rerank score": c.rerank_score,
            "retrieval score": c.retrieval_score,
            "final score": c.final_score,
            "source": c.source,
            "page": "" if c.page is None else str(c.page),  # documents without pages: an empty cell
            "text": c.text,
        }
        for n, c in enumerate(chunks, 1)
    ])


def _score_range(values: list[float | None], default: tuple[float, float]) -> tuple[float, float]:
    present = [v for v in values if v is not None]
    if not present:
        return default
    lo, hi = min(present + [default[0]]), max(present + [default[1]])
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def chunk_table(result: AskResult, *, chunks: list[ChunkHit] | None = None, compact: bool = False,
                expandable: bool = True) -> None:
    """The chunks behind the answer: final rank, rank before rerank and its movement, both scores as bars,
    source and page; each text expandable below."""
    chunks = result.chunks if chunks is None else chunks
    if not chunks:
        return
    frame = chunk_frame(chunks)
    # Bars span the scores of all top-k candidates, so a bar's length compares across the table.
    rr_lo, rr_hi = _score_range([c.rerank_score for c in result.candidates], (0.0, 1.0))
    rt_lo, rt_hi = _score_range([c.retrieval_score for c in result.candidates], (0.0, 1.0))
    columns: dict[str, Any] = {
        "cite": st.column_config.TextColumn("cite", help="The answer cites this chunk as [n]", width="small"),
        "rank": st.column_config.NumberColumn("rank", help="Final rank", width="small"),
        "before rerank": st.column_config.NumberColumn("before rerank", help="Rank after the first retrieval",
                                                       width=105),
        "moved": st.column_config.TextColumn("moved", help="Places gained (▲) or lost (▼) by reranking",
                                             width="small"),
        "rerank score": st.column_config.ProgressColumn(
            "rerank score", help="Cross-encoder relevance", format="%.3f", min_value=rr_lo, max_value=rr_hi),
        "retrieval score": st.column_config.ProgressColumn(
            "retrieval score", help="Cosine similarity of the embeddings", format="%.3f",
            min_value=min(0.0, rt_lo), max_value=max(1.0, rt_hi)),
        "final score": st.column_config.ProgressColumn(
            "final score", help=f"What ordered the chunks: {result.rerank_weight:g} × rerank + "
            f"{1 - result.rerank_weight:g} × retrieval score, each min-max normalised over the candidates",
            format="%.3f", min_value=0.0, max_value=1.0) if result.blended else None,
        "source": st.column_config.TextColumn("source"),
        "page": st.column_config.TextColumn("page", width="small"),
        "text": st.column_config.TextColumn("text", width="large"),
    }
    hidden = [] if result.reranked else ["before rerank", "moved", "rerank score"]
    if not result.blended:
        hidden.append("final score")
    frame = frame.drop(columns=hidden)
    for name in hidden:
        columns.pop(name)
    if compact:  # a narrow column: source and page in one cell, the one score that ranked it, no text
        frame["source"] = [c.citation for c in chunks]
        score = "final score" if result.blended else "rerank score" if result.reranked else "retrieval score"
        if result.reranked:
            frame["moved"] = [f"{c.movement} (was {c.retrieval_rank})" for c in chunks]
        frame = frame[[c for c in ("rank", "moved") if c in frame] + ["source", score]]
        columns = {name: columns[name] for name in frame.columns}
        columns["rank"] = st.column_config.NumberColumn("rank", help="Final rank", width=45)
        if "moved" in columns:
            columns["moved"] = st.column_config.TextColumn("moved", help="Places gained (▲) or lost (▼) by "
                                                           "reranking, and the rank before", width=95)
    st.dataframe(frame, column_config=columns, hide_index=True, width="stretch")
    if expandable:
        for n, chunk in enumerate(chunks, 1):
            with st.expander(escape_md(f"[{n}] {chunk.citation} — full text")):
                st.text(chunk.text)


def timings_line(result: AskResult) -> str:
    t = result.timings_ms
    return (f"embed {t.embed:.0f} ms · search {t.search:.0f} ms · rerank {t.rerank:.0f} ms · "
            f"generate {t.generate:.0f} ms · total {t.total:.0f} ms")


def timings(result: AskResult) -> None:
    st.caption(f":material/timer: {timings_line(result)} — {len(result.candidates)} candidates from "
               f"'{escape_md(result.collection)}', embedder {escape_md(model_label(result.embedder))}")
