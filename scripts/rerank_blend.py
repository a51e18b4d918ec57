"""Which reranker, read how far, blended how, over the first stage: the grid that sets the rerank defaults.

    .venv/bin/python scripts/rerank_blend.py --queries 150 --out runs/blend.json \\
        --rerankers rerank-minilm-l6 cross-encoder/ms-marco-MiniLM-L-12-v2#160 \\
                    cross-encoder/ms-marco-MiniLM-L-12-v2#256 cross-encoder/ms-marco-MiniLM-L-12-v2#512

For every dev set: the first N judged queries (held-out parts only where the shipped reranker trained),
their first stage run once through ``RagPipeline.ask`` (the configured first stage and top-k, no rerank, no
LLM), and every candidate scored by every reranker spec (``NAME[#max_length]``, raw logits). Each
combination is then scored offline on those very candidates (MRR@5), so every variant compares the same
lists:

* ``first``               the first stage's order alone
* ``SPEC rerank@d``       the top-d candidates by the rerank logit alone, the rest below in first-stage order
* ``SPEC linear:w@d``     w x rerank + (1-w) x first-stage score, each min-max normalised over the top-d
* ``SPEC rrf:w@d``        w / (60 + rerank rank) + (1-w) / (60 + first-stage rank): a fusion of ranks
* ``SPEC confident:w@d``  ``linear`` with a per-query weight w x sigmoid(best logit): where the reranker
                          finds no candidate convincing, the first stage's order stands

``--depth N`` scores only the top-N candidates (the app reads 6: RAG_RERANK_DEPTH), so variants read at most N.

The table gives MRR@5 per set and each variant's worst and mean change against ``first`` over the sets:
the default is chosen by the worst case, not by the best set. ``--pick`` prints only the best variants.
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
from evaluation.gain_share import gain_share  # noqa: E402
from evaluation.index import dataset_label, index_corpus  # noqa: E402
from evaluation.metrics import first_occurrences, mrr  # noqa: E402
from rag.pipeline import RagPipeline  # noqa: E402
from rag.rerank import blend, reranker_from_spec, sigmoid  # noqa: E402
from rag.settings import Settings  # noqa: E402

WEIGHTS = (0.1, 0.3, 0.5, 0.7)
DEPTHS = (6, 10, 20)
# The PDF set: document-level labels over chunked 10-Q filings (long questions over table pages)
EXTRA_SETS = [("sec10q", "pdf_docugami_sec10q", None)]


def record(settings: Settings, folder: Path, queries: int, held_out: str | None, specs: list[str],
           depth: int | None = None) -> dict:
    """{"queries": [{"relevant", "candidates": [[source, first rank, first score], ...]}],
    "logits": {spec: [[logit per candidate] per query]}, "ms": {spec: ms per query}}."""
    dataset = load_dataset(folder, name=dataset_label(folder))
    info = index_corpus(settings, folder, dataset)
    pipeline = RagPipeline(settings)
    rows, texts = [], []
    for query in dataset.queries_with_qrels(queries, relevant_docs=held_out):
        if not query.text.strip():
            continue
        result = pipeline.ask(query.text, collection=info.collection, rerank=False, generate=False)
        rows.append({"question": query.text, "relevant": sorted(dataset.relevant(query.id)),
                     "candidates": [[c.source, c.retrieval_rank, c.retrieval_score] for c in result.candidates],
                     # --depth: only what a variant reads; kept, so that a spec added later scores these texts
                     "texts": [c.text for c in result.candidates][:depth]})
        texts.append(rows[-1]["texts"])
    data = {"queries": rows, "logits": {}, "ms": {}}
    for spec in specs:
        data["logits"][spec], data["ms"][spec] = score_all(spec, rows, texts)
    return data


def score_all(spec: str, rows: list[dict], texts: list[list[str]]) -> tuple[list[list[float]], float]:
    reranker = reranker_from_spec(spec)
    started = time.perf_counter()
    logits = [reranker.logits(row["question"], t) for row, t in zip(rows, texts, strict=True)]
    return logits, round((time.perf_counter() - started) * 1000 / max(len(rows), 1), 1)


def order(candidates: list[list], logits: list[float] | None, variant: str) -> list[str]:
    """The documents in the order ``variant`` ranks the candidates (see the module docstring)."""
    sources = [c[0] for c in candidates]
    if variant == "first" or logits is None:
        return first_occurrences(sources)
    combo, _, depth = variant.partition("@")
    d = min(int(depth or len(candidates)), len(candidates), len(logits))
    head, first = logits[:d], [c[2] for c in candidates[:d]]
    kind, _, w = combo.partition(":")
    keys = list(head) if kind == "rerank" else blend(head, first, kind, float(w), confidence=sigmoid(max(head)))
    ranked = sorted(range(d), key=lambda i: (-keys[i], candidates[i][1])) + list(range(d, len(candidates)))
    return first_occurrences(sources[i] for i in ranked)


def per_question(data: dict, spec: str | None, variant: str) -> list[float]:
    rows = data["queries"]
    logits = data["logits"][spec] if spec else [None] * len(rows)
    return [mrr(r["relevant"], order(r["candidates"], lg, variant), 5) for r, lg in zip(rows, logits, strict=True)]


def score(data: dict, spec: str | None, variant: str) -> float:
    values = per_question(data, spec, variant)
    return sum(values) / max(len(values), 1)


def shares(done: dict, reference: str, specs: list[str], only: list[str]) -> str:
    """Per variant, how much of the reference's mean gain each other spec keeps (evaluation.gain_share)."""
    lines = [f"Share of {reference}'s mean gain, same variant, 95 % stratified paired bootstrap over the questions:"]
    for spec in (s for s in specs if s != reference):
        for v in only:
            per_set = {label: (per_question(d, None, "first"), per_question(d, reference, v), per_question(d, spec, v))
                       for label, d in done.items()}
            lines.append(f"- {spec} {v}: {gain_share(per_set)}")
    return "\n".join(lines)


def variants(depth: int | None = None) -> list[str]:
    combos = ["rerank", *(f"{kind}:{w}" for kind in ("linear", "confident", "rrf") for w in WEIGHTS)]
    return [f"{c}@{d}" for c in combos for d in DEPTHS if depth is None or d <= depth]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=150)
    ap.add_argument("--rerankers", nargs="+", default=["rerank-minilm-l6"], help="specs: NAME[@backend][#max_length]")
    ap.add_argument("--only", nargs="*", help="labels to run, in this order (default: the English sets + sec10q)")
    ap.add_argument("--depth", type=int, default=None,
                    help="score only each query's top-N candidates (variants read at most N; default: all top-k)")
    ap.add_argument("--variants", nargs="*", help="print only these variants (e.g. rerank@6 confident:0.7@6)")
    ap.add_argument("--report-only", action="store_true", help="print the table of --out as it is; score nothing")
    ap.add_argument("--pick", type=int, default=0, help="print only the N variants with the best worst case")
    ap.add_argument("--share-of", metavar="SPEC",
                    help="also print how much of this reranker's gain each other one keeps, with its interval")
    ap.add_argument("--out", default="runs/blend.json")
    args = ap.parse_args()
    settings = Settings()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = json.loads(out.read_text()) if out.is_file() else {}
    english = [s for s in SETS if not s[0].startswith(("cmrc", "xquad/zh", "dureader"))] + EXTRA_SETS
    everything = SETS + EXTRA_SETS
    chosen = [next(s for s in everything if s[0] == label) for label in args.only] if args.only else english
    for label, folder, held_out in [] if args.report_only else chosen:
        started = time.time()
        if label not in done:
            done[label] = record(settings, settings.datasets_dir / folder, args.queries, held_out, args.rerankers,
                                 args.depth)
        else:  # a spec added later: score the recorded candidates only
            missing = [s for s in args.rerankers if s not in done[label]["logits"]]
            rows = done[label]["queries"]
            if missing and all("texts" in r for r in rows):  # the recorded candidates, scored offline
                for spec in missing:
                    scored = score_all(spec, rows, [r["texts"] for r in rows])
                    done[label]["logits"][spec], done[label]["ms"][spec] = scored
            elif missing:
                fresh = record(settings, settings.datasets_dir / folder, args.queries, held_out, missing, args.depth)
                for key in ("logits", "ms"):
                    done[label][key].update(fresh[key])
        out.write_text(json.dumps(done))
        print(f"{label}: {len(done[label]['queries'])} queries in {time.time() - started:.0f} s", file=sys.stderr)
    print(report(done, args.rerankers, args.pick, args.depth, args.variants))
    if args.share_of:
        print("\n" + shares(done, args.share_of, args.rerankers, args.variants or variants(args.depth)))
    return 0


def report(done: dict, specs: list[str], pick: int = 0, depth: int | None = None,
           only: list[str] | None = None) -> str:
    labels = list(done)
    base = {label: score(done[label], None, "first") for label in labels}
    rows = [("first", "", [base[label] for label in labels])]
    for spec in specs:
        for v in only or variants(depth):
            rows.append((spec, v, [score(done[label], spec, v) for label in labels]))
    def worst(row):
        return min(m - base[label] for m, label in zip(row[2], labels, strict=True))
    if pick:
        rows = [rows[0], *sorted(rows[1:], key=lambda r: -worst(r))[:pick]]
    ms = {spec: "/".join(f"{done[label]['ms'].get(spec, 0):.0f}" for label in labels) for spec in specs}
    lines = [f"MRR@5 over the first stage's top-k; rerank ms per query (all top-k) per set: "
             + "; ".join(f"{s}: {m}" for s, m in ms.items()), "",
             "| reranker | variant | " + " | ".join(labels) + " | mean change | worst change |",
             "|---|---|" + "---|" * (len(labels) + 2)]
    for spec, v, values in rows:
        mean = sum(m - base[label] for m, label in zip(values, labels, strict=True)) / len(labels)
        lines.append(f"| {spec} | {v} | " + " | ".join(f"{m:.3f}" for m in values)
                     + f" | {mean:+.3f} | {worst((spec, v, values)):+.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
