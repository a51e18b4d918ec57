#!/usr/bin/env python
"""Held-out quality of rerankers: first stage (packaged MiniLM embedder, top-20) vs reranked top-5.

The benchmark behind the numbers in models/rerank-minilm-l6/README.md. Unlike `rerank-rag eval`
(which runs the whole app pipeline over Chroma), it scores reranker checkpoints straight from a
folder, torch or ONNX, on a random sample, with score interpolation. Every set is a part the shipped
model did NOT train on:

  squad-heldout  squad11_dev queries of articles 38-47 (corpus: all 2,067 paragraphs)
  xquad-en       xquad/en (its 240 paragraphs were removed from training; same Wikipedia articles)
  xquad-zh       xquad/zh
  cmrc-trial     cmrc2018 TRIAL_* queries (corpus: all 1,104 paragraphs; DEV_* was trained on)

  .venv/bin/python scripts/reranker_quality.py --reranker rerank-minilm-l6 --reranker control --limit 300

`control` is the untrained head (packaged all-MiniLM-L6-v2 with a fresh one-logit head, seed 0).
A reranker spec may carry a backend and a max length: `PATH@torch`, `PATH@onnx#256`.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.settings import Settings  # noqa: E402

from evaluation.datasets import load_dataset  # noqa: E402
from rag.embedders.models import packaged_minilm_path  # noqa: E402
from training.data import MiningEmbedder  # noqa: E402
from training.validate import ce_scorer, evaluate_rerank  # noqa: E402

SETS = {
    "squad-heldout": ("squad11_dev", r"^s(3[89]|4[0-7])_"),
    "xquad-en": ("xquad/en", None),
    "xquad-zh": ("xquad/zh", None),
    "cmrc-trial": ("cmrc2018", r"^TRIAL_"),
}


def held_out(root: Path, key: str, limit: int | None, seed: int):
    sub, pattern = SETS[key]
    ds = load_dataset(root / sub, name=key)
    ids = [q.id for q in ds.queries_with_qrels(relevant_docs=pattern)]
    if limit and limit < len(ids):
        keep = set(random.Random(seed).sample(ids, limit))
        ids = [i for i in ids if i in keep]  # file order
    return ds.subset(ids)


def make_scorer(spec: str):
    import torch

    if spec == "control":
        from sentence_transformers import CrossEncoder

        torch.manual_seed(0)
        return ce_scorer(CrossEncoder(packaged_minilm_path(), num_labels=1, max_length=160, device="cpu"))
    from rag.rerank import reranker_from_spec

    return reranker_from_spec(spec).score


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(Settings().datasets_dir))
    ap.add_argument("--reranker", action="append", required=True)
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--limit", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--alphas", default="0.5,0.7", help="also report interpolation with the first-stage score")
    ap.add_argument("--out", default=None, help="append JSON lines here")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    alphas = [float(x) for x in a.alphas.split(",") if x]
    emb = MiningEmbedder()
    sets = [held_out(Path(a.data), k, a.limit, a.seed) for k in a.sets.split(",")]
    cache = {}
    results = []
    for spec in a.reranker:
        scorer = make_scorer(spec)
        for ds in sets:
            if ds.name not in cache:
                cache[ds.name] = emb.encode([d.text for d in ds.corpus.values()])
            t = time.time()
            res = evaluate_rerank(ds, emb, scorer, limit=None, doc_emb=cache[ds.name], alphas=alphas)
            res.update(reranker=spec, seconds=round(time.time() - t, 1))
            results.append(res)
            print(json.dumps(res), flush=True)
            if a.out:
                with open(a.out, "a") as fh:
                    fh.write(json.dumps(res) + "\n")
    print()
    print("| reranker | set | n | hit@5 first | MRR@5 first | hit@5 rerank | MRR@5 rerank | "
          + " | ".join(f"MRR@5 a={x}" for x in alphas) + " |")
    print("|---|---|---|---|---|---|---|" + "---|" * len(alphas))
    for r in results:
        print(f"| {r['reranker']} | {r['dataset']} | {r['queries']} | {r['first_hit@5']:.3f} | {r['first_mrr@5']:.3f} | "
              f"{r['rerank_hit@5']:.3f} | {r['rerank_mrr@5']:.3f} | "
              + " | ".join(f"{r[f'interp{x}_mrr@5']:.3f}" for x in alphas) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
