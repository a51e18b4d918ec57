"""Speed on this machine: ingest and query through rerank-rag, and through a stock llama-index pipeline.

``rerank-rag bench`` measures, in one run:

* ingest of a folder of documents (default: the 12 SEC 10-Q PDFs of ``pdf_docugami_sec10q``) through
  :class:`ingest.pipeline.Ingestor`: pages/s, chunks/s, wall time; then the raw embedder alone on the same
  chunk texts (``Embedder.embed_documents``), so the pipeline's overhead shows as a ratio;
* 100 questions without an LLM (the first 100 of ``squad11_dev`` with qrels, over its corpus) through
  :meth:`rag.pipeline.RagPipeline.ask`: p50/p95 per stage (embed, search, rerank), the pipeline's total and
  the caller's wall time per question;
* the peak RSS of the process;
* the same through the stock llama-index pipeline of :mod:`evaluation.stock`, in a separate process (so
  its RSS and model caches are its own); and the ratios.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from evaluation.cli import quiet_libraries, stderr
from evaluation.datasets import question_texts
from evaluation.index import index_corpus
from evaluation.machine import machine, peak_rss_mb
from evaluation.metrics import percentiles, stage_percentiles
from evaluation.stock import run_stock
from rag.settings import Settings

DEFAULT_DOCS = Path("pdf_docugami_sec10q") / "pdfs"  # under Settings.datasets_dir
DEFAULT_DATASET = Path("squad11_dev")
TARGETS = {
    "query_p50_ms_max": 150.0,  # query without LLM, top-20 rerank
    "ingest_vs_raw_embedder_min": 0.9,  # pipeline chunks/s over the raw embedder's chunks/s
    "stock_over_ours_query_min": 2.0,  # stock p50 / our p50
}


def _files(docs: Path, max_docs: int | None) -> list[Path]:
    from ingest.loaders import SUPPORTED_SUFFIXES

    if docs.is_file():
        return [docs]
    files = sorted(p for p in docs.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)
    if not files:
        raise ValueError(f"no supported documents under {docs}")
    return files[:max_docs] if max_docs else files


# ---- ours ------------------------------------------------------------------------------------------
def bench_ingest(settings: Settings, files: list[Path], workdir: Path) -> dict:
    from ingest.loaders import load_document
    from ingest.pipeline import Ingestor
    from rag.models import load_embedder
    from rag.store import KnowledgeBase

    s = settings.model_copy(update={"data_dir": workdir / "ours"})
    embedder = load_embedder(s.embed_model, s.device, s.embed_batch_size)  # loading is not ingest
    embedder.embed_documents(["warm-up"])
    started = time.perf_counter()
    results = Ingestor(s, "bench-ingest", embedder=embedder).ingest_paths(files)
    wall = time.perf_counter() - started
    failed = [r.line() for r in results if r.status == "failed"]
    if failed:
        raise RuntimeError("ingest failed: " + "; ".join(failed))
    pages = sum(r.pages for r in results)
    chunks = sum(r.chunks for r in results)
    kb = KnowledgeBase(s, "bench-ingest", embed_model=embedder.name)
    texts = [chunk.text for chunk in kb.committed_chunks()]
    t = time.perf_counter()
    embedder.embed_documents(texts)
    raw_s = time.perf_counter() - t
    # Where the rest of the time goes: the loaders alone (parse), on the same files.
    t = time.perf_counter()
    for path in files:
        load_document(path.name, path.read_bytes(), max_bytes=int(s.max_file_mb * 1_000_000))
    parse_s = time.perf_counter() - t
    return {
        "files": len(files),
        "pages": pages,
        "chunks": chunks,
        "wall_s": round(wall, 2),
        "pages_per_s": round(pages / wall, 2),
        "chunks_per_s": round(chunks / wall, 2),
        "raw_embedder": {"chunks": len(texts), "wall_s": round(raw_s, 2), "chunks_per_s": round(len(texts) / raw_s, 2)},
        "parse_s": round(parse_s, 2),
        "vs_raw_embedder": round((chunks / wall) / (len(texts) / raw_s), 3),
    }


def bench_query(settings: Settings, dataset_dir: Path, n: int, progress=None) -> dict:
    from rag.pipeline import RagPipeline

    info = index_corpus(settings, dataset_dir, progress=progress)
    questions = question_texts(dataset_dir, n)
    pipeline = RagPipeline(settings)
    rerank = pipeline.reranker is not None
    for q in questions[:2]:  # warm-up: model loads, first ONNX/torch runs, HNSW index load
        pipeline.ask(q, collection=info.collection, rerank=rerank, generate=False)
    samples: dict[str, list[float]] = {"embed": [], "search": [], "rerank": [], "total": [], "wall": []}
    for q in questions:
        t = time.perf_counter()
        result = pipeline.ask(q, collection=info.collection, rerank=rerank, generate=False)
        samples["wall"].append((time.perf_counter() - t) * 1000)
        if rerank and not (result.reranked and any(c.rerank_rank is not None for c in result.candidates)):
            raise RuntimeError(f"the query {q!r} came back without a rerank: the figures would not be top-k rerank")
        for stage in ("embed", "search", "rerank", "total"):
            samples[stage].append(getattr(result.timings_ms, stage))
    total = percentiles(samples["total"])
    wall = percentiles(samples["wall"])
    return {
        "dataset": str(dataset_dir),
        "queries": len(questions),
        "corpus_nodes": info.nodes,
        "top_k": settings.top_k,
        "top_n": settings.top_n,
        "reranker": settings.reranker if rerank else None,
        "p50_ms": total.p50,
        "p95_ms": total.p95,
        "wall_p50_ms": wall.p50,
        "wall_p95_ms": wall.p95,
        "stages": stage_percentiles({k: v for k, v in samples.items() if k in ("embed", "search", "rerank")}),
    }


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


def run_bench(
    settings: Settings,
    *,
    docs: Path | None = None,
    dataset: Path | None = None,
    queries: int = 100,
    max_docs: int | None = None,
    baseline: bool = True,
    stock_reranker: str | None = None,
    progress=None,
) -> dict:
    """The whole benchmark as the ``--json`` dict (see the module docstring)."""
    docs = Path(docs) if docs else settings.datasets_dir / DEFAULT_DOCS
    dataset = Path(dataset) if dataset else settings.datasets_dir / DEFAULT_DATASET
    files = _files(docs, max_docs)
    workdir = Path(tempfile.mkdtemp(prefix="bench-", dir=_scratch(settings)))
    try:
        header = machine()
        if progress:
            progress(f"ingest: {len(files)} files from {docs}")
        if baseline and progress:
            progress("(the stock llama-index pipeline runs afterwards, in its own process)")
        ingest = bench_ingest(settings, files, workdir)
        if progress:
            progress(f"ingest: {ingest['chunks']} chunks in {ingest['wall_s']} s; queries: {queries} from {dataset}")
        query = bench_query(settings, dataset, queries, progress)
        rss = peak_rss_mb()
        report: dict = {"ingest": ingest, "query": query, "rss_mb": rss}
        if baseline:
            if progress:
                progress("stock llama-index pipeline (separate process)")
            report["baseline"] = run_stock(settings, files, dataset, queries, workdir, stock_reranker)
            base = report["baseline"]
            report["ratios"] = {
                "query_p50_stock_over_ours": _ratio(base["query"]["p50_ms"], query["wall_p50_ms"]),
                "query_p95_stock_over_ours": _ratio(base["query"]["p95_ms"], query["wall_p95_ms"]),
                "ingest_wall_stock_over_ours": _ratio(base["ingest"]["wall_s"], ingest["wall_s"]),
                "ingest_chunks_per_s_ours_over_stock": _ratio(ingest["chunks_per_s"], base["ingest"]["chunks_per_s"]),
                "rss_stock_over_ours": _ratio(base["rss_mb"], rss),
                "ingest_ours_over_raw_embedder": ingest["vs_raw_embedder"],
            }
        else:
            report["ratios"] = {"ingest_ours_over_raw_embedder": ingest["vs_raw_embedder"]}
        report["targets"] = targets(report)
        report["machine"] = header
        report["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        report["settings"] = {"embed_model": settings.embed_model, "reranker": settings.reranker,
                              "top_k": settings.top_k, "top_n": settings.top_n, "chunk_size": settings.chunk_size,
                              "chunk_overlap": settings.chunk_overlap, "embed_batch_size": settings.embed_batch_size}
        return report
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def targets(report: dict) -> dict:
    """Each product target with the measured value and whether it is met."""
    out = {
        "query_p50_ms_le_150": {"value": report["query"]["wall_p50_ms"],
                                "met": report["query"]["wall_p50_ms"] <= TARGETS["query_p50_ms_max"]},
        "ingest_ge_90pct_raw_embedder": {"value": report["ingest"]["vs_raw_embedder"],
                                         "met": report["ingest"]["vs_raw_embedder"] >= TARGETS["ingest_vs_raw_embedder_min"]},
    }
    ratio = report.get("ratios", {}).get("query_p50_stock_over_ours")
    if ratio is not None:
        out["query_ge_2x_stock"] = {"value": ratio, "met": ratio >= TARGETS["stock_over_ours_query_min"]}
    return out


def _scratch(settings: Settings) -> Path:
    path = Path(settings.data_dir).expanduser().resolve() / "bench-tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---- CLI -----------------------------------------------------------------------------------------------
def summary(report: dict) -> str:
    i, q = report["ingest"], report["query"]
    lines = [
        f"machine: {report['machine']}",
        f"ingest (ours): {i['files']} files, {i['pages']} pages, {i['chunks']} chunks in {i['wall_s']} s = "
        f"{i['pages_per_s']} pages/s, {i['chunks_per_s']} chunks/s; raw embedder {i['raw_embedder']['chunks_per_s']} "
        f"chunks/s (ours/raw {i['vs_raw_embedder']}); parsing alone {i['parse_s']} s",
        f"query (ours, no LLM, top-{q['top_k']} -> rerank -> top-{q['top_n']}, {q['reranker']}): "
        f"p50 {q['p50_ms']} ms, p95 {q['p95_ms']} ms (caller's wall p50 {q['wall_p50_ms']}, p95 {q['wall_p95_ms']}); "
        + ", ".join(f"{k} p50 {v['p50']}/p95 {v['p95']}" for k, v in q["stages"].items()),
        f"peak RSS (ours): {report['rss_mb']} MB",
    ]
    if "baseline" in report:
        b = report["baseline"]
        lines += [
            f"stock ingest: {b['ingest']['chunks']} chunks in {b['ingest']['wall_s']} s = {b['ingest']['chunks_per_s']} chunks/s",
            f"stock query: p50 {b['query']['p50_ms']} ms, p95 {b['query']['p95_ms']} ms; "
            + ", ".join(f"{k} p50 {v['p50']}" for k, v in b["query"]["stages"].items())
            + f"; reranker backend {b['reranker_backend']}; peak RSS {b['rss_mb']} MB",
        ]
    lines.append("ratios: " + ", ".join(f"{k} {v}" for k, v in report["ratios"].items()))
    lines.append("targets: " + ", ".join(f"{k}: {v['value']} ({'met' if v['met'] else 'NOT met'})"
                                         for k, v in report["targets"].items()))
    return "\n".join(lines)


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    quiet_libraries(args)
    if args.reranker_name:
        settings = settings.model_copy(update={"reranker": args.reranker_name})
    elif not settings.rerank_enabled:
        from evaluation.run import default_rerankers

        settings = settings.model_copy(update={"reranker": default_rerankers(settings)[0]})
    report = run_bench(settings, docs=args.docs, dataset=args.dataset, queries=args.queries,
                       max_docs=args.max_docs, baseline=not args.no_baseline, stock_reranker=args.stock_reranker,
                       progress=None if args.quiet else stderr)
    print(json.dumps(report, ensure_ascii=False, indent=2) if args.json else summary(report))
    return 0


def register(subparsers, parent) -> None:
    p = subparsers.add_parser("bench", parents=[parent],
                              help="ingest and query speed here, against a stock llama-index pipeline")
    p.add_argument("--docs", help=f"documents to ingest (default: the 12 SEC 10-Q PDFs, DATASETS_DIR/{DEFAULT_DOCS})")
    p.add_argument("--max-docs", type=int, help="only the first N documents (smoke runs)")
    p.add_argument("--dataset", help=f"BEIR folder for the queries (default DATASETS_DIR/{DEFAULT_DATASET})")
    p.add_argument("--queries", type=int, default=100, help="questions to time (default 100)")
    p.add_argument("--reranker", dest="reranker_name", help="reranker (default: the configured one, else the shipped default)")
    p.add_argument("--stock-reranker", metavar="PATH",
                   help="torch checkpoint for the stock SentenceTransformerRerank (default: the reranker's own "
                        "torch weights, else a same-architecture MiniLM-L6 cross-encoder; see evaluation.stock)")
    p.add_argument("--no-baseline", action="store_true", help="skip the stock llama-index pipeline")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=cmd_bench)


