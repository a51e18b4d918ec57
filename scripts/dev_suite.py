"""Every first stage, with and without the reranker, on every dev set: the table of the hybrid issue.

    .venv/bin/python scripts/dev_suite.py --queries 300 --out runs/dev_suite.json

Per set: the first N queries with judgements (corpora whole, one node per document), top-k candidates,
scored at top-n, through ``evaluation.run.evaluate_dataset`` (so through ``RagPipeline.ask``). The sets the
shipped reranker trained on are cut to their held-out part (its model card: SQuAD articles 38-47, CMRC
2018 TRIAL_*); the others it never saw. Prints a Markdown table and writes the reports as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evaluation.run import evaluate_dataset  # noqa: E402
from rag.settings import Settings  # noqa: E402

# (label, folder under the datasets dir, relevant-doc regex of the held-out part or None)
SETS = [
    ("squad11_dev 38-47", "squad11_dev", r"^s(3[89]|4[0-7])_"),
    ("xquad/en", "xquad/en", None),
    ("cisi", "cisi", None),
    ("medline", "medline", None),
    ("npl", "npl", None),
    ("emanual/s10", "emanual_samsung/s10", None),
    ("emanual/smarttv", "emanual_samsung/smarttv", None),
    ("cmrc2018 TRIAL", "cmrc2018", r"^TRIAL_"),
    ("xquad/zh", "xquad/zh", None),
    ("dureader", "dureader_robust_dev", None),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--only", nargs="*", help="labels or folders to run (default: all)")
    ap.add_argument("--embedder", help="embedder (default: the settings')")
    ap.add_argument("--first-stages", nargs="*", help="dense, bm25, hybrid (default: all three)")
    ap.add_argument("--reranker", dest="rerankers", action="append", metavar="R",
                    help="rerankers to run (default: the settings'; 'none': the first stages alone)")
    ap.add_argument("--out", default="runs/dev_suite.json")
    args = ap.parse_args()
    settings = Settings(**({"embed_model": args.embedder} if args.embedder else {}))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = json.loads(out.read_text()) if out.is_file() else {}
    for label, folder, held_out in SETS:
        if args.only and label not in args.only and folder not in args.only:
            continue
        if label in done:
            continue
        started = time.time()
        report = evaluate_dataset(settings, settings.datasets_dir / folder, queries=args.queries,
                                  relevant_docs=held_out, first_stages=args.first_stages,
                                  rerankers=None if args.rerankers is None else [r for r in args.rerankers
                                                                                  if r.lower() != "none"],
                                  progress=lambda m: print(f"[{time.strftime('%H:%M:%S')}] {label}: {m}",
                                                           file=sys.stderr, flush=True))
        done[label] = report.model_dump()
        done[label]["wall_s"] = round(time.time() - started, 1)
        out.write_text(json.dumps(done, indent=2, ensure_ascii=False))
    print(table(done))
    return 0


def table(done: dict) -> str:
    lines = ["| set | queries | run | hit@5 | MRR@5 | recall@k | p50 ms |", "|---|---|---|---|---|---|---|"]
    for label, report in done.items():
        for run in report["runs"]:
            lines.append(f"| {label} | {report['queries']} | {run['name']}{' *' if run['default'] else ''} | "
                         f"{run['hit_rate']:.3f} | {run['mrr']:.3f} | {run['recall_at_k']:.3f} | "
                         f"{run['latency_ms']['p50']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
