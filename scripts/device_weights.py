"""Carry a MiniLM cross-encoder to a lent GPU machine and its trained weights back, within the tool's limits.

The device tool moves at most 64 MiB each way, in files of at most 16 MiB; MiniLM-L6 is 91 MB in fp32. So:

    scripts/device_weights.py base .trainset/base             # here: the packaged base, fp16 (45 MB)
    scripts/device_weights.py pack runs/ce $OUT/ce             # there: trained weights, fp16, parts < 15 MB
    scripts/device_weights.py unpack $FILES/ce runs/ce-gpu     # here: base fp32 + those weights -> a model

``unpack --base DIR`` takes the word embeddings (and tokenizer) from another start: the multilingual student
trains on a start cut to the pieces its texts use (training/e5_carry.py) and comes back onto the whole one.

``pack`` leaves out the word-embedding matrix (training freezes it: it equals the base's), so a model comes
back in two parts of 11 MB; ``unpack`` takes that matrix from the fp32 base again. fp16 rounding (~5e-4
relative) is far below the int8 quantisation the shipped file gets.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"
PART_BYTES = 15_000_000
DECLARED = "reranker.json"  # rag.catalog.FOLDER_INFO: the languages a trained folder reads
SIDE_FILES = ("training_summary.json", DECLARED)


def _cross_encoder(path: str, max_length: int | None = None):
    from sentence_transformers import CrossEncoder

    ce = CrossEncoder(path, num_labels=1, max_length=max_length, device="cpu")
    ce.model.float()
    return ce


def base(dst: Path) -> None:
    from safetensors.torch import load_file, save_file

    from rag.embedders.models import packaged_minilm_path

    src = Path(packaged_minilm_path())
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.suffix in (".json", ".txt") and f.name != "data_config.json":
            shutil.copy2(f, dst / f.name)
    tensors = {k: v.half().contiguous() for k, v in load_file(str(src / "model.safetensors")).items()}
    save_file(tensors, str(dst / "model.safetensors"))


def pack(src: Path, dst: Path) -> None:
    from safetensors.torch import save_file

    state = _cross_encoder(str(src)).model.state_dict()
    dst.mkdir(parents=True, exist_ok=True)
    part, size, n = {}, 0, 0
    for key, tensor in state.items():
        if key.endswith(WORD_EMBEDDINGS):
            continue
        t = tensor.detach().half().contiguous()
        if part and size + t.numel() * 2 > PART_BYTES:
            save_file(part, str(dst / f"part{n}.safetensors"))
            part, size, n = {}, 0, n + 1
        part[key] = t
        size += t.numel() * 2
    save_file(part, str(dst / f"part{n}.safetensors"))
    for f in SIDE_FILES:
        if (src / f).is_file():
            shutil.copy2(src / f, dst / f)


def unpack(src: Path, dst: Path, max_length: int, base: str | None = None) -> None:
    from safetensors.torch import load_file

    from rag.embedders.models import packaged_minilm_path

    ce = _cross_encoder(base or packaged_minilm_path(), max_length)
    trained = {}
    for part in sorted(src.glob("part*.safetensors")):
        trained |= {k: v.float() for k, v in load_file(str(part)).items()}
    missing, unexpected = ce.model.load_state_dict(trained, strict=False)
    if unexpected or any(not k.endswith(WORD_EMBEDDINGS) for k in missing):
        raise SystemExit(f"weights do not fit the base: missing {missing}, unexpected {unexpected}")
    ce.save_pretrained(str(dst))
    if (src / DECLARED).is_file():  # what the trained folder declares (its languages) comes back with it
        shutil.copy2(src / DECLARED, dst / DECLARED)
    summary = src / "training_summary.json"
    if summary.is_file():  # the card names the packaged base, not the fp16 copy that travelled
        import json

        from training.model_card import PACKAGED_BASE, model_card

        data = json.loads(summary.read_text(encoding="utf-8"))
        data["base"] = data["config"]["base"] = (f"{base} (cut to its training texts' pieces for the GPU machine)"
                                                 if base else f"{PACKAGED_BASE} (carried to the GPU machine in fp16)")
        data["config"]["out"] = str(dst)
        (dst / "training_summary.json").write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        (dst / "README.md").write_text(model_card(data))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("verb", choices=("base", "pack", "unpack"))
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--max-length", type=int, default=160, help="unpack: the reranker's max length")
    ap.add_argument("--base", default=None, help="unpack: the start to put the weights on (default: the packaged "
                                                 "all-MiniLM-L6-v2)")
    a = ap.parse_args()
    if a.verb == "base":
        base(Path(a.paths[0]))
    elif a.verb == "pack":
        pack(Path(a.paths[0]), Path(a.paths[1]))
    else:
        unpack(Path(a.paths[0]), Path(a.paths[1]), a.max_length, a.base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
