"""A page's state: this browser session's settings, models loaded once per server, the knowledge base,
and the first-start ingest of the sample documents. Drawing results is :mod:`app_pages.rendering`'s job."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import streamlit as st
from pydantic import ValidationError

from rag.embedders.models import ModelUnavailableError, configured_embedder
from rag.pipeline import RagPipeline
from app_pages.rendering import escape_md
from ingest.pipeline import WRITE_LOCK
from rag.catalog import model_label
from rag.rerank import load_reranker
from rag.settings import REPO_ROOT, Settings, describe_invalid, reranker_off
from rag.chroma_client import describe_holders, store_holders
from rag.store import KnowledgeBase, StoreError, check_user_collection, collection_embedder, hold_embedded

if TYPE_CHECKING:
    from api.keys import ApiKey

# The documents a new user can ask about at once; RAG_SAMPLE_DIR="" turns the first-start ingest off.
DEFAULT_SAMPLE_DIR = REPO_ROOT / "data" / "sample"
SAMPLES_MARKER = ".samples-ingested"

OVERRIDES = "settings_overrides"  # session_state key: this browser session's changes to the settings
COLLECTION = "collection"  # session_state key: the collection this session reads and writes
ACCESS = "access"  # session_state key: the API key this session signed in with (None: the app is open)
STORE_USE = "store_use"  # session_state key: this run's StoreUse


# ---- who may do what: the session's key (app_pages.login) and the store's one writer ---------------------
@dataclass(frozen=True)
class StoreUse:
    """How this app process may use an embedded store that other processes may hold (rag.chroma_client)."""

    blocked: str | None = None  # another process is writing to it: this app cannot read it consistently now
    shared_with: str | None = None  # other processes serve it too: nobody may write, this app included

    @property
    def writable(self) -> bool:
        return not self.blocked and not self.shared_with


def claim_store(settings: Settings) -> StoreUse:
    """Hold this process's shared claim on the embedded store (once per process; a later run retries it) and
    say who else holds one: a second process's writes would be invisible to this one's searches, and ours to
    theirs, so the app reads only while an ingest writes nothing, and writes only while it serves alone."""
    try:
        hold_embedded(settings)
    except StoreError as error:
        use = StoreUse(blocked=str(error))
    else:
        others = store_holders(settings)
        use = StoreUse(shared_with=describe_holders(others) if others else None)
    st.session_state[STORE_USE] = use
    return use


def set_access(key: ApiKey | None) -> None:
    st.session_state[ACCESS] = key


def access_key() -> ApiKey | None:
    return st.session_state.get(ACCESS)


def asker() -> str:
    """Who asks, as marks name their maker (rag.mark_memory.marker): the session's key, else the app."""
    from rag.mark_memory import marker

    key = access_key()
    return marker(key.key_id, key.name) if key is not None else marker("", "app")


def may_open(collection: str) -> bool:
    """Whether this session's key opens ``collection`` (any, when the app is open). A session that never
    passed the gate in app.py opens nothing."""
    if ACCESS not in st.session_state:
        return False
    key = access_key()
    return key is None or key.opens(collection)


def may_create() -> bool:
    """Whether this session may create collections: an open app, or a write key for every collection."""
    key = access_key()
    return ACCESS in st.session_state and (key is None or (key.collection == "*" and key.allows("write")))


def may_administer() -> bool:
    """Whether this session may point the server at other models (folders, hub ids) and LLM servers, which
    reads the server's files and reaches its network: an open app, or an admin key."""
    key = access_key()
    return ACCESS in st.session_state and (key is None or key.allows("admin"))


ADMIN_ONLY = "only with an admin key: folders, hub ids and LLM servers reach the server's own files and network"


def may_load_reranker(name: str) -> bool:
    """Whether this session may have the server rerank with ``name``: any, with admin rights; else 'none', the
    server's configured reranker and those this process has loaded already, since loading another one reads the
    server's files or fetches it from the model hub, and holds its memory for every session."""
    if may_administer() or reranker_off(name):
        return True
    name = name.strip()
    return name == server_reranker() or name in loaded_rerankers()


def shown_model(name: str | None) -> str | None:
    """A model's name as this session may read it: a folder's whole path with admin rights, else its last part
    (a fine-tune lives in the server's data dir); as api.service.shown_model does for a key."""
    return name if not name or may_administer() else model_label(name)


def server_reranker() -> str:
    """The reranker the server is configured with (environment, secrets), whatever a session chose."""
    return Settings().reranker.strip()


def loaded_rerankers() -> list[str]:
    """The rerankers this process has loaded, by the name each was asked for."""
    return [model.name for model in loaded_models() if model.role == "reranker"]


def why_read_only(collection: str) -> str | None:
    """Why this session may not upload to or delete from ``collection``, in plain words; None when it may."""
    key = access_key()
    if not may_open(collection):
        return f"this session's key does not open the collection '{collection}'"
    if key is not None and not key.allows("write"):
        return f"this session's key '{key.name}' has {key.scope} scope: uploads and deletes need a write key"
    return shared_store_reason()


def shared_store_reason() -> str | None:
    """Why nothing may be written to the store from this app while another process serves it too."""
    use = st.session_state.get(STORE_USE) or StoreUse()
    if use.shared_with:
        return (f"this store is also held by {use.shared_with}, and an embedded store takes writes from one "
                "process only; stop that process to upload or delete here, or run Chroma in server mode "
                "(RAG_CHROMA_HOST)")
    return None


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


ENGINES = {"onnx": "ONNX Runtime", "torch": "PyTorch"}  # a model's backend id -> the engine that runs it


def engine_name(backend: str) -> str:
    """The engine a model runs on, in words: "ONNX Runtime", "PyTorch" (an unknown id as it is)."""
    return ENGINES.get(str(backend), str(backend))


def _load(role: str, name: str, device: str, loader: Callable[[], Any]) -> Any:
    """Load through the process-wide caches of rag.embedders.models/rag.rerank, recording where from and how long."""
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
                role, name, str(getattr(model, "path", name)), engine_name(getattr(model, "backend", "torch")),
                round(seconds, 2), time.strftime("%H:%M:%S"),
            )
    return model


def loaded_models() -> list[LoadedModel]:
    return list(_loaded_models().values())


def embedder(settings: Settings):
    """The embedder of this session's collection: the one it was built with, else the settings'."""
    name = collection_embedder(settings) or settings.embed_model
    return _load("embedder", name, settings.device,
                 lambda: configured_embedder(settings, name))


def reranker(settings: Settings):
    """The configured reranker, or None when the setting is 'none'; raises ModelUnavailableError (never falls back)."""
    if not settings.rerank_enabled:
        return None
    return _load("reranker", settings.reranker, settings.device,
                 lambda: load_reranker(settings.reranker, settings.device, settings.rerank_max_length))


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
def knowledge_base(settings: Settings, name: str | None = None) -> KnowledgeBase:
    """A collection a person picked or named: never one of the store's own, nor one this session's key does not
    open (StoreError, in plain words)."""
    check_user_collection(name or settings.collection)
    if not may_open(name or settings.collection):
        raise StoreError(f"this session's key does not open the collection '{name or settings.collection}'")
    return KnowledgeBase(settings, name)


def sample_dir() -> Path | None:
    raw = os.environ.get("RAG_SAMPLE_DIR")
    if raw is None:
        return DEFAULT_SAMPLE_DIR
    return Path(raw).expanduser() if raw.strip() else None


def ingest_samples_on_first_start(settings: Settings) -> None:
    """On the first start (empty default collection, samples never ingested), ingest the sample documents."""
    from ingest.pipeline import Ingestor, expand_paths

    folder = sample_dir()
    if folder is None or not folder.is_dir() or not (st.session_state.get(STORE_USE) or StoreUse()).writable:
        return  # a store another process also serves: the samples go in once this app serves it alone
    base = Settings(**st.session_state.get(OVERRIDES, {}))  # the default collection, not this session's
    marker = Path(base.data_dir).expanduser() / SAMPLES_MARKER
    if marker.exists():
        return
    files = list(expand_paths([folder]))
    if not files:
        return
    with WRITE_LOCK:
        if marker.exists():  # another session did it while this one waited
            return
        kb = KnowledgeBase(base)  # the server's own first start, whichever collection this session's key opens
        # A rerun (a click elsewhere) can stop this run between two files. Documents commit whole, so the next run
        # adds the sample files still missing, as long as the collection holds nothing but sample files.
        present = {record.source for record in kb.documents()}
        if present <= {file.name for file in files}:
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
