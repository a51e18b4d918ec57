"""The second retrieval: a cross-encoder reads (question, chunk) pairs and scores each.

>>> reranker = load_reranker("path/to/cross-encoder")
>>> reranker.score("Who founded Acme?", ["Acme was founded by Ada.", "The sky is blue."])
[0.93, 0.01]
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence

from rag.models import resolve_model

NO_RERANK = "none"


class Reranker:
    """A sentence-transformers CrossEncoder behind a typed, thread-safe ``score``."""

    def __init__(self, name: str, *, device: str = "cpu", max_length: int | None = None) -> None:
        from sentence_transformers import CrossEncoder

        self.name = name
        self.path = resolve_model(name, kind="reranker")
        self.model = CrossEncoder(self.path, device=device, max_length=max_length)
        self._lock = threading.Lock()

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        """One relevance score per text, higher is more relevant, in the order given."""
        if not texts:
            return []
        with self._lock:
            scores = self.model.predict([(query, text) for text in texts], show_progress_bar=False)
        return [float(score) for score in scores]


@functools.lru_cache(maxsize=4)
def load_reranker(name: str, device: str = "cpu") -> Reranker | None:
    """The reranker called ``name``, loaded once per process; ``None`` for ``"none"``."""
    if name.strip().lower() == NO_RERANK:
        return None
    return Reranker(name, device=device)
