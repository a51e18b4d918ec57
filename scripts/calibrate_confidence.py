#!/usr/bin/env python
"""Where should `low_confidence_score` sit? Measures the reranker's best score when the answer is
in the store and when it is not, on the held-out sets of scripts/reranker_quality.py.

For every question it runs the first stage (packaged MiniLM, top-20) and the reranker twice:
  answer in store   over the whole corpus; counted when a relevant passage reaches the top-5
  answer removed    over the corpus without the question's relevant passages (what a user sees
                    when asking about something the knowledge base does not hold)
and prints, per threshold, how often the app would warn in each case. The suggested threshold is the
highest one that warns on at most --max-false-alarm of the answered questions in every set: a warning
that often fires on good answers teaches users to ignore it, and no single set decides.

  .venv/bin/python scripts/calibrate_confidence.py --reranker rerank-minilm-l6 --limit 300
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.settings import Settings  # noqa: E402

from reranker_quality import SETS, held_out  # noqa: E402

from training.data import MiningEmbedder  # noqa: E402

THRESHOLDS = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7)


def best_scores(ds, emb, score, doc_emb, first_k: int = 20, k: int = 5) -> tuple[list[float], list[float]]:
    """(best score of questions answered in the top-k, best score of the same questions with their passages removed)."""
    import torch

    doc_ids = list(ds.corpus)
    index = {d: i for i, d in enumerate(doc_ids)}
    queries = ds.queries_with_qrels()
    sims = emb.encode([q.text for q in queries]) @ doc_emb.T
    answered, removed = [], []
    for qi, q in enumerate(queries):
        rel = ds.relevant(q.id)
        for drop in (False, True):
            row = sims[qi].clone()
            if drop:
                row[[index[d] for d in rel if d in index]] = -torch.inf
            ids = [doc_ids[i] for i in torch.topk(row, first_k).indices.tolist()]
            scores = score(q.text, [ds.corpus[d].text for d in ids])
            if drop:
                removed.append(max(scores))
            else:
                top = sorted(range(len(ids)), key=lambda i: -scores[i])[:k]
                if any(ids[i] in rel for i in top):
                    answered.append(max(scores))
    return answered, removed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(Settings().datasets_dir))
    ap.add_argument("--reranker", default="rerank-minilm-l6")
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--limit", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-false-alarm", type=float, default=0.15,
                    help="largest share of answered questions a set may be warned on (default 0.15)")
    a = ap.parse_args()
    from rag.rerank import load_reranker

    score = load_reranker(a.reranker).score
    emb = MiningEmbedder()
    per_set = {}
    for key in a.sets.split(","):
        ds = held_out(Path(a.data), key, a.limit, a.seed)
        answered, removed = best_scores(ds, emb, score, emb.encode([d.text for d in ds.corpus.values()]))
        per_set[key] = (answered, removed)
        print(json.dumps({"set": key, "answered": len(answered), "removed": len(removed)}), flush=True)

    def rate(xs: list[float], t: float) -> float:
        return sum(x < t for x in xs) / max(1, len(xs))

    print(f"\nShare of questions the app warns on (best rerank score < threshold), reranker {a.reranker}:\n")
    print("| threshold | " + " | ".join(f"{k}: answer in store / removed" for k in per_set) + " | balanced accuracy |")
    print("|---|" + "---|" * (len(per_set) + 1))
    suggested = None
    for t in THRESHOLDS:
        cells, accs = [], []
        for answered, removed in per_set.values():
            cells.append(f"{rate(answered, t):.0%} / {rate(removed, t):.0%}")
            accs.append((1 - rate(answered, t) + rate(removed, t)) / 2)
        if all(rate(answered, t) <= a.max_false_alarm for answered, _ in per_set.values()):
            suggested = t
        print(f"| {t} | " + " | ".join(cells) + f" | {sum(accs) / len(accs):.3f} |")
    print(f"\nsuggested low_confidence_score: {suggested} (the highest threshold that warns on at most "
          f"{a.max_false_alarm:.0%} of the answered questions of every set)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
