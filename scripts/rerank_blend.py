"""How to combine the reranker with the first stage so that reranking never undoes a good first stage.

    .venv/bin/python scripts/rerank_blend.py --queries 300 --out runs/blend.json

For every dev set: the first N judged queries (held-out parts only where the shipped reranker trained),
asked once through ``RagPipeline.ask`` (the configured first stage, top-k, reranked, no LLM) and every
candidate's first-stage rank/score and rerank score recorded; then each combination is scored offline on
those very candidates (MRR@5), so every variant compares the same lists:

* ``first``            the first stage's order alone
* ``rerank``           the rerank score alone (RAG_RERANK_WEIGHT=1)
* ``linear:w``         w x rerank + (1-w) x first-stage score, each min-max normalised per query
* ``rrf:w``            w / (60 + rerank rank) + (1-w) / (60 + first-stage rank): a fusion of ranks
* ``confident:w``      ``linear`` with a per-query weight w x (the best rerank probability): where the
                       reranker finds no candidate convincing, the first stage's order stands

The table gives MRR@5 per set and each variant's worst change against ``first`` over all sets: the
default is chosen by that worst case, not by the best set.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dev_suite import SETS  # noqa: E402

from evaluation.datasets import load_dataset  # noqa: E402
from evaluation.index import dataset_label, index_corpus  # noqa: E402
from evaluation.metrics import first_occurrences, mrr  # noqa: E402
from rag.pipeline import RagPipeline  # noqa: E402
from rag.rerank import minmax  # noqa: E402
from rag.settings import Settings  # noqa: E402

WEIGHTS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)


def record(settings: Settings, folder: Path, queries: int, held_out: str | None) -> list[dict]:
    dataset = load_dataset(folder, name=dataset_label(folder))
    info = index_corpus(settings, folder, dataset)
    # every candidate scored (no cascade), so each variant, cascades included, is computed from the same scores
    pipeline = RagPipeline(settings.model_copy(update={"rerank_weight": 1.0, "rerank_depth": settings.top_k}))
    rows = []
    for query in dataset.queries_with_qrels(queries, relevant_docs=held_out):
        if not query.text.strip():
            continue
        result = pipeline.ask(query.text, collection=info.collection, generate=False)
        rows.append({"relevant": sorted(dataset.relevant(query.id)),
                     "candidates": [[c.source, c.retrieval_rank, c.retrieval_score, c.rerank_score]
                                    for c in result.candidates]})
    return rows


def order(candidates: list[list], variant: str) -> list[str]:
    sources = [c[0] for c in candidates]
    if variant == "first":
        keys = [-c[1] for c in candidates]
    elif variant == "rerank":
        keys = [c[3] for c in candidates]
    else:
        kind, w = variant.split(":")
        w = float(w)
        if kind in ("linear", "confident"):
            if kind == "confident":
                w *= max(c[3] for c in candidates)
            keys = [w * r + (1 - w) * f for r, f in zip(minmax([c[3] for c in candidates]),
                                                        minmax([c[2] for c in candidates]), strict=True)]
        else:
            by_rerank = sorted(range(len(candidates)), key=lambda i: -candidates[i][3])
            rerank_rank = {i: rank for rank, i in enumerate(by_rerank, 1)}
            keys = [w / (60 + rerank_rank[i]) + (1 - w) / (60 + c[1]) for i, c in enumerate(candidates)]
    ranked = sorted(range(len(candidates)), key=lambda i: (-keys[i], candidates[i][1]))
    return first_occurrences(sources[i] for i in ranked)


def score(rows: list[dict], variant: str) -> float:
    return sum(mrr(r["relevant"], order(r["candidates"], variant), 5) for r in rows) / max(len(rows), 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--embedder")
    ap.add_argument("--only", nargs="*", help="labels to run, in this order (default: all)")
    ap.add_argument("--out", default="runs/blend.json")
    args = ap.parse_args()
    settings = Settings(**({"embed_model": args.embedder} if args.embedder else {}))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(out.read_text()) if out.is_file() else {}
    chosen = [next(s for s in SETS if s[0] == label) for label in args.only] if args.only else SETS
    for label, folder, held_out in chosen:
        if label not in data:
            started = time.time()
            data[label] = record(settings, settings.datasets_dir / folder, args.queries, held_out)
            out.write_text(json.dumps(data))
            print(f"{label}: {len(data[label])} queries in {time.time() - started:.0f} s", file=sys.stderr)
    variants = ["first", "rerank", *(f"{kind}:{w}" for kind in ("linear", "confident", "rrf") for w in WEIGHTS)]
    table = {label: {v: score(rows, v) for v in variants} for label, rows in data.items()}
    print(f"{settings.retrieval} first stage, top-{settings.top_k}, embedder {settings.embed_model}, "
          f"reranker {settings.reranker}; MRR@5\n")
    print("| variant | " + " | ".join(table) + " | worst change vs first |")
    print("|---|" + "---|" * (len(table) + 1))
    for v in variants:
        worst = min(table[label][v] - table[label]["first"] for label in table)
        print(f"| {v} | " + " | ".join(f"{table[label][v]:.3f}" for label in table) + f" | {worst:+.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
