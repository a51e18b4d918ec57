"""rerank-rag's read path: question → first retrieval → cross-encoder rerank → top-n → answer.

The public API, importable from ``rag`` directly::

    from rag import RagPipeline, Settings
    result = RagPipeline(Settings()).ask("How long does the battery take to charge?")

Modules, one job each: ``settings`` (every knob), ``types`` (the result that travels to every surface),
``models`` (finding and loading embedders, offline first), ``store`` (the Chroma knowledge base),
``rerank`` + ``catalog`` (the second retrieval), ``answer`` (LLM or extractive), ``pipeline`` (the
stages in order), ``cli`` (the command line). Writing the knowledge base is :mod:`ingest`'s job;
measuring it is :mod:`evaluation`'s; training the reranker is :mod:`training`'s.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# Names resolve on first use (PEP 562), so ``import rag.settings`` stays light: the CLI parses its
# arguments before chromadb, torch or onnxruntime are imported.
_EXPORTS = {
    "RagPipeline": "rag.pipeline",
    "Settings": "rag.settings",
    "AskResult": "rag.types",
    "ChunkHit": "rag.types",
    "StageTimings": "rag.types",
    "KnowledgeBase": "rag.store",
    "StoreError": "rag.store",
    "Embedder": "rag.embedders.models",
    "load_embedder": "rag.embedders.models",
    "ModelUnavailableError": "rag.embedders.models",
    "Reranker": "rag.rerank",
    "load_reranker": "rag.rerank",
    "LlmError": "rag.answer",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from rag.answer import LlmError  # noqa: F401
    from rag.embedders.models import Embedder, ModelUnavailableError, load_embedder  # noqa: F401
    from rag.pipeline import RagPipeline  # noqa: F401
    from rag.rerank import Reranker, load_reranker  # noqa: F401
    from rag.settings import Settings  # noqa: F401
    from rag.store import KnowledgeBase, StoreError  # noqa: F401
    from rag.types import AskResult, ChunkHit, StageTimings  # noqa: F401


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rag' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
