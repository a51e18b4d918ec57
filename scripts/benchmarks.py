#!/usr/bin/env python
"""Regenerate BENCHMARKS.md's "latest full run": retrieval quality (dense vs reranked, default models) on the
public sets, and the speed figures of ``rerank-rag bench`` with the stock llama-index ratios.

Only the block between the page's ``<!-- BEGIN GENERATED: benchmarks ...`` and ``END`` markers is rewritten: the
current state above it and the history below it are written by hand, and a run leaves them alone.

    .venv/bin/python scripts/benchmarks.py                 # the published run (~20 min on 2 CPU cores)
    .venv/bin/python scripts/benchmarks.py --quick --out /tmp/B.md   # 10 queries a set, 20 bench queries

Corpus indexes are cached under the data dir (see evaluation.run), so a re-run only re-embeds what changed.
The raw figures are kept beside the page as BENCHMARKS.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from datetime import datetime, UTC
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rag.reference_docs import with_block  # noqa: E402
from rag.settings import Settings  # noqa: E402

DATASETS = Settings().datasets_dir
# (label, folder, relevant-doc regex): only what the default reranker never trained on (its model card
# gives the split): SQuAD articles 38-47, cmrc2018's TRIAL_* paragraphs, XQuAD whole. Corpora stay whole.
SETS = [
    ("squad11_dev articles 38-47", DATASETS / "squad11_dev", r"^s(3[89]|4[0-7])_"),
    ("xquad/en", DATASETS / "xquad" / "en", None),
    ("xquad/zh", DATASETS / "xquad" / "zh", None),
    ("cmrc2018 TRIAL_*", DATASETS / "cmrc2018", r"^TRIAL_"),
]


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def quality_section(reports) -> list[str]:
    first = reports[0][1]
    lines = [
        "### Retrieval quality: dense vs reranked",
        "",
        f"First stage: `{first.embedder}` top-{first.top_k} from Chroma; reranked: `{first.rerankers[0]}` "
        f"cross-encoder over those {first.top_k}, scored at top-{first.top_n}. One node per corpus document "
        "(title + text), so the qrels' document ids match. Hit rate and MRR as LlamaIndex's RetrieverEvaluator "
        "defines them (llama_index.core HitRate/MRR); nDCG@10 over the whole reranked candidate list. "
        "Latency: per query, no LLM, through `RagPipeline.ask` on this machine.",
        "",
        f"| dataset | queries | run | hit@{first.top_n} | MRR@{first.top_n} | nDCG@10 | p50 ms | p95 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, r in reports:
        for run in r.runs:
            lines.append(f"| {label} | {r.queries} | {run.name} | {run.hit_rate:.3f} | {run.mrr:.3f} | "
                         f"{run.ndcg_at_10:.3f} | {run.latency_ms.p50:.1f} | {run.latency_ms.p95:.1f} |")
    lines += ["", "Change from reranking (reranked minus dense):", "",
              f"| dataset | hit@{first.top_n} | MRR@{first.top_n} | nDCG@10 |", "|---|---|---|---|"]
    for label, r in reports:
        dense, reranked = r.runs[0], r.runs[1]
        lines.append(f"| {label} | {reranked.hit_rate - dense.hit_rate:+.3f} | {reranked.mrr - dense.mrr:+.3f} | "
                     f"{reranked.ndcg_at_10 - dense.ndcg_at_10:+.3f} |")
    return lines + [""]


def speed_section(bench: dict) -> list[str]:
    i, q = bench["ingest"], bench["query"]
    b = bench.get("baseline")
    r = bench.get("ratios", {})
    lines = [
        "### Speed (`rerank-rag bench`)",
        "",
        f"Machine: {bench['machine']}; {bench['date']}. Every target is a ratio (or a size) measured in this one run: "
        "absolute times on this shared machine move with its load.",
        "",
        f"Ingest: {i['files']} SEC 10-Q PDFs ({i['pages']} pages) -> {i['chunks']} chunks of "
        f"{bench['settings']['chunk_size']} tokens, BM25 index build included. Queries: the first {q['queries']} of "
        f"`squad11_dev` over its {q['corpus_nodes']}-paragraph corpus, {q.get('retrieval', 'dense')} top-{q['top_k']} "
        f"-> rerank -> top-{q['top_n']}, no LLM.",
        "",
        "Targets (issue 13):",
        "",
        "| target | measured | bound | met |",
        "|---|---|---|---|",
    ]
    names = {"query_p50_ge_8x_stock": "query p50: stock llama-index / ours",
             "ingest_ge_2x_stock": "ingest wall: stock llama-index / ours",
             "app_rss_le_1gb": "peak RSS MB of an app process that answered questions",
             "scale_first_stage_p95_within_2x": "first-stage p95 (embed, search, BM25, fusion) at the scale "
                                                "collection / at the bench's corpus"}
    for key, v in bench["targets"].items():
        value = "not run" if v["value"] is None else v["value"]
        lines.append(f"| {names.get(key, key)} | {value} | {v.get('bound', '')} | {'yes' if v['met'] else 'no'} |")
    lines += ["", "| | rerank-rag | stock llama-index | stock / ours |", "|---|---|---|---|"]

    def row(name, ours, stock="-", ratio="-"):
        lines.append(f"| {name} | {ours} | {stock} | {ratio} |")

    row("ingest wall s", i["wall_s"], b["ingest"]["wall_s"] if b else "-", r.get("ingest_wall_stock_over_ours", "-"))
    row("ingest pages/s", i["pages_per_s"], b["ingest"]["pages_per_s"] if b else "-")
    row("ingest chunks/s", i["chunks_per_s"], b["ingest"]["chunks_per_s"] if b else "-")
    row(f"raw embedder chunks/s ({i['raw_embedder']['chunks']} of the same chunks)", i["raw_embedder"]["chunks_per_s"])
    row("query p50 ms", q["wall_p50_ms"], b["query"]["p50_ms"] if b else "-", r.get("query_p50_stock_over_ours", "-"))
    row("query p95 ms", q["wall_p95_ms"], b["query"]["p95_ms"] if b else "-", r.get("query_p95_stock_over_ours", "-"))
    row("peak RSS MB (the bench process / the stock process)", bench["rss_mb"], b["rss_mb"] if b else "-",
        r.get("rss_stock_over_ours", "-"))
    lines += ["", "Per stage (ms, p50 / p95):", "", "| stage | rerank-rag | stock llama-index |", "|---|---|---|"]
    for stage, v in q["stages"].items():
        lines.append(f"| {stage} | {v['p50']} / {v['p95']} | |")
    for stage, v in (b["query"]["stages"] if b else {}).items():
        label = "retrieve (embed, search, BM25, fusion)" if stage == "retrieve" else stage
        lines.append(f"| {label} | | {v['p50']} / {v['p95']} |")
    lines += [
        "",
        f"Query p50/p95 of rerank-rag is the caller's wall time around `RagPipeline.ask` (the pipeline's own total: "
        f"{q['p50_ms']} / {q['p95_ms']} ms). Ingest parsing alone (pypdf) took {i['parse_s']} s of the {i['wall_s']} s.",
    ]
    if b:
        lines += ["", f"Stock pipeline: {b['pipeline']}, same embedder, chunking, per-side depth and top-k/top-n; its "
                      f"SentenceTransformerRerank ran {b['reranker_backend']} (it loads torch checkpoints only)."]
    m = bench.get("app_memory")
    if m:
        steps = list(m["rss_mb_after"].items())
        growth = ", ".join(f"{name} {value - steps[n - 1][1]:+.0f}" if n else f"{name} {value:.0f}"
                           for n, (name, value) in enumerate(steps))
        lines += ["", f"**App memory**: a fresh process that imports what the app imports, loads both models and "
                      f"answers {m['questions']} questions (extractive answers) peaked at {m['peak_rss_mb']} MB; torch "
                      f"imported: {'yes' if m['torch_imported'] else 'no'}. Where it goes (MB, RSS growth per step): "
                      f"{growth}."]
    c = bench.get("scale")
    if c:
        q = c.get("base_query") or q  # the bench corpus's figures from the scale figures' own run, when merged
        build = (c.get("build") or {}).get("ingest") or {}
        lines += ["", f"**Scale**: {c['chunks']} chunks ({(c.get('build') or {}).get('chunk_size', '?')}-token chunks of "
                      "the dev-suite corpora, `rerank-rag bench --scale`), the same queries:", "",
                  f"| | {q['corpus_nodes']} nodes | {c['chunks']} chunks |", "|---|---|---|"]
        for stage in ("embed", "search", "bm25", "rerank"):
            lines.append(f"| {stage} p95 ms | {q['stages'][stage]['p95']} | {c['stages'][stage]['p95']} |")
        lines.append(f"| first stage p50 / p95 ms | {q['first_stage_p50_ms']} / {q['first_stage_p95_ms']} | "
                     f"{c['first_stage_p50_ms']} / {c['first_stage_p95_ms']} |")
        lines.append(f"| query p50 / p95 ms | {q['wall_p50_ms']} / {q['wall_p95_ms']} | "
                     f"{c['wall_p50_ms']} / {c['wall_p95_ms']} |")
        lines.append(f"| ingest chunks/s | {i['chunks_per_s']} | {build.get('chunks_per_s', '-')} |")
        lines.append(f"| peak RSS MB (query process) | {m['peak_rss_mb'] if m else '-'} | {c['rss_mb']} |")
        manifest = c.get("build") or {}
        if manifest.get("vectors"):
            lines += ["", f"Its vectors are {manifest['vectors']}; its texts are the real chunks and the BM25 index is "
                          f"built from them ({manifest.get('bm25_build_s')} s). Retrieval quality at this size is not "
                          "measured by it."]
        if build:
            lines += ["", f"Ingest rate at scale: {build.get('chunks_per_s')} chunks/s over {build.get('chunks')} chunks "
                          f"(load average {build.get('load_avg_start')} at its start"
                          + (f", OMP_NUM_THREADS={build['omp_num_threads']}" if build.get("omp_num_threads") else "")
                          + ")" + (f": {build['note']}" if build.get("note") else "")
                          + (" (resumed: the rate counts the last run's files)" if build.get("resumed") else "") + "."]
    return lines + [""]


def model_fingerprint(name: str) -> str:
    """Which weights produced the numbers: the reranker's ONNX (or torch) file and its sha256 prefix."""
    import hashlib

    try:
        from rag.embedders.models import TORCH_WEIGHTS
        from rag.rerank import onnx_file, resolve_reranker

        path = Path(resolve_reranker(name)[0])
        rel = onnx_file(str(path)) or next((f for f in TORCH_WEIGHTS if (path / f).is_file()), None)
        if rel is None:
            return f"{path} (no weights file found)"
        digest = hashlib.sha256((path / rel).read_bytes()).hexdigest()[:16]
        try:
            shown = (path / rel).relative_to(REPO)
        except ValueError:
            shown = path / rel
        return f"`{shown}` (sha256 {digest}...)"
    except Exception as error:  # noqa: BLE001 - a fingerprint must never stop the run
        return f"unknown ({type(error).__name__})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    parser.add_argument("--data-dir", help="store for the cached eval indexes (default: settings, data/store)")
    parser.add_argument("--quick", action="store_true", help="10 queries a set, 20 bench queries, 2 PDFs (a smoke run)")
    parser.add_argument("--no-bench", action="store_true", help="only the quality tables")
    parser.add_argument("--cap", type=int, metavar="N",
                        help="at most N queries a set (first N in file order)")
    parser.add_argument("--quality-json", metavar="FILE",
                        help="reuse the quality reports of an earlier run (its BENCHMARKS.json, or the .partial.json "
                             "an interrupted run left) and evaluate only the sets it lacks")
    parser.add_argument("--bench-json", metavar="FILE",
                        help="use the figures of an earlier `rerank-rag bench --json > FILE` instead of running it")
    args = parser.parse_args(argv)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TQDM_DISABLE", "1")
    import logging

    logging.disable(logging.WARNING)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    from evaluation.bench import machine, run_bench
    from evaluation.run import default_rerankers, evaluate_dataset

    settings = Settings(**({"data_dir": args.data_dir} if args.data_dir else {}))
    reranker = default_rerankers(settings)[0]
    settings = settings.model_copy(update={"reranker": reranker})
    started = time.perf_counter()
    header_machine = machine()
    weights = model_fingerprint(reranker)
    given = argv if argv is not None else sys.argv[1:]
    command = "scripts/benchmarks.py" + (" " + shlex.join(given) if given else "")
    started_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    reports = []
    reused: list[str] = []
    if args.quality_json:
        from evaluation.run import EvalReport

        saved = json.loads(Path(args.quality_json).read_text())  # read now: a resumed run rewrites its partial file
        reports = [(label, EvalReport(**saved["quality"][label])) for label, _, _ in SETS if label in saved["quality"]]
        reused = [label for label, _ in reports]
    for label, folder, relevant_docs in SETS:
        if any(label == done for done, _ in reports):
            continue
        n = 10 if args.quick else args.cap
        _log(f"eval {label} ({n or 'all'} queries)")
        reports.append((label, evaluate_dataset(settings, folder, queries=n, relevant_docs=relevant_docs,
                                                rerankers=[reranker], ndcg=True, progress=_log)))
        reports.sort(key=lambda item: [s[0] for s in SETS].index(item[0]))
        partial = Path(args.out).with_suffix(".partial.json")  # a long run's finished sets survive an interrupt
        partial.write_text(json.dumps({"quality": {k: r.model_dump() for k, r in reports}, "command": command,
                                       "date": started_at, "machine": header_machine}, ensure_ascii=False))
    bench = None
    if args.bench_json:
        bench = json.loads(Path(args.bench_json).read_text())
    elif not args.no_bench:
        _log("bench")
        bench = run_bench(settings, queries=20 if args.quick else 100, max_docs=2 if args.quick else None,
                          progress=_log)
    minutes = (time.perf_counter() - started) / 60
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    provenance = []
    if reused:
        if len(reused) == len(SETS):
            header_machine = saved.get("machine", header_machine)
        provenance.append(f"quality tables of {', '.join(reused)} from `{saved.get('command', args.quality_json)}` "
                          f"({saved.get('date', 'date not recorded')})")
    if args.bench_json:
        provenance.append(f"speed figures from `rerank-rag bench --json` ({bench.get('date', 'date not recorded')}; "
                          f"machine: {bench.get('machine', '?')})")
    lines = [
        f"Regenerate with `make benchmarks` (= `.venv/bin/python scripts/benchmarks.py`, ~30-60 min on 2 CPU cores). "
        f"This run: `{command}`, {now}"
        + (f"; {'; '.join(provenance)}." if provenance else f", {minutes:.0f} min."),
        "",
        f"Machine: {header_machine}. No GPU.",
        "",
        f"Models: embedder `{settings.embed_model}`, reranker `{reranker}` (as configured; defaults unless RAG_* says otherwise); top-k {settings.top_k}, "
        f"top-n {settings.top_n}.",
        "",
        f"Reranker weights: {weights}.",
        "",
        "Reproduce one row: `rerank-rag eval --dataset ../shared/datasets/xquad/en --json` (add "
        "`--relevant-docs '^s(3[89]|4[0-7])_'` for the SQuAD row, `--relevant-docs '^TRIAL_'` for cmrc2018); "
        "the speed table: `rerank-rag bench --json`.",
        "",
    ]
    lines += quality_section(reports)
    lines += [
        "Read with care:",
        "",
        "- Every row is held out from the shipped rerankers' training: SQuAD articles 38-47 and cmrc2018's TRIAL_* "
        "questions (the catalog's rerank-minilm-l6 trained on articles 0-37 and DEV_*: "
        "models/rerank-minilm-l6/README.md; the default MS MARCO reranker on none of these sets), `xquad/en` (its "
        "paragraphs were removed from the SQuAD training documents) and `xquad/zh` (in no training set). The "
        "corpora are whole, so the first stage also meets the trained-on paragraphs as distractors.",
        "- A reranker can only reorder the candidates the first stage found; one that does not read a question's "
        "language (an English reranker on the Chinese sets) leaves the first stage's order.",
        "- Latencies were measured on a shared 2-core machine (load average in the machine line); "
        "the Speed section's figures are the ones to quote for speed.",
        "",
    ]
    if bench:
        lines += speed_section(bench)
    out = Path(args.out)
    page = out.read_text(encoding="utf-8") if out.exists() else "# Benchmarks\n"
    out.write_text(with_block(page, "benchmarks", "\n".join(lines).strip("\n"), command="make benchmarks"),
                   encoding="utf-8")
    raw = {"quality": {label: r.model_dump() for label, r in reports}, "bench": bench, "machine": header_machine,
           "command": command, "date": now}
    Path(args.out).with_suffix(".json").write_text(json.dumps(raw, indent=2, ensure_ascii=False), encoding="utf-8")
    _log(f"wrote {args.out} and {Path(args.out).with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
