"""Export a trained cross-encoder to the shipped form: ONNX, dynamic int8."""

from __future__ import annotations

from pathlib import Path



SHIPPED_ONNX = "onnx/model_qint8.onnx"
# transformers' eager attention, not SDPA: traced, SDPA's masking becomes a graph ONNX Runtime runs ~19 % slower
# (the L-12 re-exported: 192 vs 157 ms per 6 candidates at 256 tokens, 1 thread; scripts/bench_rerank.py)
ATTENTION = "eager"
_CONFIG_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                 "config_sentence_transformers.json", "modules.json", "sentence_bert_config.json",
                 "README.md", "training_summary.json", "reranker.json")


def export_onnx(src: str | Path, dst: str | Path, *, quantize: bool = True, keep_fp32: bool = False) -> Path:
    """Export a trained cross-encoder folder to ONNX (opset 17) in ``dst``; with ``quantize`` (default)
    the shipped file is dynamic int8 (per-channel weights, ``onnx/model_qint8.onnx``, ~23 MB for MiniLM-L6).

    ``dst`` gets the config/tokenizer files and the ONNX file, not the torch weights: it is what
    ``rag.rerank`` loads with ONNX Runtime. Export needs the ``onnx`` and ``onnxscript`` packages;
    running it only needs ``onnxruntime``."""
    import shutil

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    src, dst = Path(src), Path(dst)
    (dst / "onnx").mkdir(parents=True, exist_ok=True)
    for f in _CONFIG_FILES:
        if (src / f).is_file() and src.resolve() != dst.resolve():
            shutil.copy2(src / f, dst / f)
    model = AutoModelForSequenceClassification.from_pretrained(str(src), attn_implementation=ATTENTION).eval()
    tok = AutoTokenizer.from_pretrained(str(src))
    enc = tok(["what is a query", "q"], ["a passage to score", "another, longer passage to score"],
              return_tensors="pt", padding=True)
    names = ["input_ids", "attention_mask", "token_type_ids"]

    class _Logits(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits

    fp32 = dst / "onnx" / "model.onnx"
    with torch.no_grad():
        expected = model(**enc).logits.numpy()
        torch.onnx.export(_Logits(model), tuple(enc[n] for n in names), str(fp32), input_names=names,
                          output_names=["logits"], opset_version=17, dynamo=False,
                          dynamic_axes={**{n: {0: "batch", 1: "seq"} for n in names}, "logits": {0: "batch"}})
    import numpy as np
    import onnxruntime as ort

    got = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).run(
        None, {n: enc[n].numpy() for n in names})[0]
    if not np.allclose(got, expected, atol=1e-4):
        raise RuntimeError(f"ONNX export differs from torch: {got.ravel()} vs {expected.ravel()}")
    if not quantize:
        return fp32
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = dst / SHIPPED_ONNX
    quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=True, reduce_range=False)
    if not keep_fp32:
        fp32.unlink()
    return out
