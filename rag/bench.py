"""Speed on this machine: ingest and query through rerank-rag, and through a stock llama-index pipeline.

``rerank-rag bench`` measures, in one run:

* ingest of a folder of documents (default: the 12 SEC 10-Q PDFs of ``pdf_docugami_sec10q``) through
  :class:`ingest.pipeline.Ingestor`: pages/s, chunks/s, wall time; then the raw embedder alone on the same
  chunk texts (``Embedder.embed_documents``), so the pipeline's overhead shows as a ratio;
* 100 questions without an LLM (the first 100 of ``squad11_dev`` with qrels, over its corpus) through
  :meth:`rag.pipeline.RagPipeline.ask`: p50/p95 per stage (embed, search, rerank), the pipeline's total and
  the caller's wall time per question;
* the peak RSS of the process;
* the same through a stock llama-index pipeline in a separate process (so its RSS and model caches are its
  own): ``VectorStoreIndex`` over ``ChromaVectorStore`` with ``HuggingFaceEmbedding``, retriever top-k,
  then ``SentenceTransformerRerank`` to top-n, the same models, chunk sizes and k/n; and the ratios.

The stock ingest reads PDFs page by page with pypdf, as llama-index's ``PDFReader`` does (the
``llama-index-readers-file`` package is not a dependency here), and splits with ``SentenceSplitter``
on the embedder's tokenizer (its default tiktoken tokenizer would need a download), so both sides embed
the same chunks.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


from rag.evaluate import _stderr, index_corpus, percentiles, quiet_libraries
from rag.settings import Settings

DATASETS = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"
DEFAULT_DOCS = DATASETS / "pdf_docugami_sec10q" / "pdfs"
DEFAULT_DATASET = DATASETS / "squad11_dev"
TARGETS = {
    "query_p50_ms_max": 150.0,  # query without LLM, top-20 rerank
    "ingest_vs_raw_embedder_min": 0.9,  # pipeline chunks/s over the raw embedder's chunks/s
    "stock_over_ours_query_min": 2.0,  # stock p50 / our p50
}


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB


def cpu_model() -> str:
    """The processor's name as /proc/cpuinfo gives it (the platform's word for it elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    cpu = cpu_model()
    import torch

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{cpu}; {os.cpu_count()} CPUs; torch {torch.__version__} ({torch.get_num_threads()} threads); "
            f"Python {platform.python_version()}; {platform.system()} {platform.release()}; load avg at start {load}")


def _files(docs: Path, max_docs: int | None) -> list[Path]:
    from ingest.loaders import SUPPORTED_SUFFIXES

    if docs.is_file():
        return [docs]
    files = sorted(p for p in docs.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)
    if not files:
        raise ValueError(f"no supported documents under {docs}")
    return files[:max_docs] if max_docs else files


def _queries(dataset_dir: Path, n: int) -> list[str]:
    from rag.datasets import load_dataset

    return [q.text for q in load_dataset(dataset_dir).queries_with_qrels(n)]


def _stage_table(samples: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    return {stage: percentiles(values).model_dump() for stage, values in samples.items()}


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
    texts = KnowledgeBase(s, "bench-ingest", embed_model=embedder.name).chunks.get(include=["documents"])["documents"]
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
    questions = _queries(dataset_dir, n)
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
        "stages": _stage_table({k: v for k, v in samples.items() if k in ("embed", "search", "rerank")}),
    }


# ---- stock llama-index ---------------------------------------------------------------------------------
def _has_torch_weights(path: str | Path) -> bool:
    return any((Path(path) / f).is_file() for f in ("model.safetensors", "pytorch_model.bin"))


def stock_reranker_path(settings: Settings, workdir: Path, explicit: str | None = None) -> tuple[str, str]:
    """(folder, note) of the torch cross-encoder the stock ``SentenceTransformerRerank`` loads.

    ``SentenceTransformerRerank`` runs a torch checkpoint. The reranker's own folder is used when it has
    torch weights. Our shipped default is an int8 ONNX folder without them, so the stock side then gets a
    torch cross-encoder of the same architecture and size built from the packaged all-MiniLM-L6-v2 weights
    (the default reranker's starting point) with a fresh one-logit head: its scores mean nothing, its
    compute is the same as the trained fp32 checkpoint's, which is all a speed comparison needs.
    """
    from rag.models import resolve_model
    from rag.rerank import _resolve

    if explicit:
        return explicit, f"torch ({explicit})"
    path, _info = _resolve(settings.reranker)
    if _has_torch_weights(path):
        return path, "torch (the reranker's own checkpoint)"
    import json as _json

    base = resolve_model("all-MiniLM-L6-v2")
    ours = _json.loads((Path(path) / "config.json").read_text())
    theirs = _json.loads((Path(base) / "config.json").read_text())
    same = all(ours.get(k) == theirs.get(k) for k in ("num_hidden_layers", "hidden_size", "intermediate_size",
                                                       "num_attention_heads", "vocab_size"))
    if not same:
        raise RuntimeError(f"reranker '{settings.reranker}' has no torch weights for the stock pipeline's "
                           "SentenceTransformerRerank: pass --stock-reranker PATH (a torch checkpoint of it)")
    import torch
    from sentence_transformers import CrossEncoder

    torch.manual_seed(0)
    folder = workdir / "stock-reranker"
    # the same truncation as ours: the shipped tokenizer's model_max_length (160 for the default)
    tok_config = Path(path) / "tokenizer_config.json"
    max_length = int(_json.loads(tok_config.read_text()).get("model_max_length", 512)) if tok_config.is_file() else 512
    CrossEncoder(base, num_labels=1, max_length=min(max_length, 512)).save_pretrained(str(folder))
    return str(folder), ("torch fp32, same architecture (MiniLM-L6 H384) as the ONNX-only default, built from the "
                         "packaged all-MiniLM-L6-v2 weights")


def _stock_models(settings: Settings, workdir: Path, explicit: str | None = None):
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.postprocessor.sbert_rerank import SentenceTransformerRerank

    from rag.models import resolve_model

    embed = HuggingFaceEmbedding(model_name=resolve_model(settings.embed_model), device=settings.device,
                                 embed_batch_size=settings.embed_batch_size)
    rerank, note = None, None
    if settings.reranker.strip().lower() != "none":
        path, note = stock_reranker_path(settings, workdir, explicit)
        rerank = SentenceTransformerRerank(model=path, top_n=settings.top_n, device=settings.device)
    return embed, rerank, note


def _splitter(settings: Settings):
    from llama_index.core.node_parser import SentenceSplitter

    from rag.models import load_embedder

    tok = load_embedder(settings.embed_model, settings.device, settings.embed_batch_size)
    return SentenceSplitter(chunk_size=min(settings.chunk_size, tok.max_tokens), chunk_overlap=settings.chunk_overlap,
                            tokenizer=tok.tokenize)


def _stock_read(files: list[Path]):
    """Documents as llama-index's PDFReader makes them (one per page, pypdf text); other files whole."""
    from llama_index.core import Document

    from ingest.loaders import load_document

    docs = []
    for path in files:
        if path.suffix.lower() == ".pdf":
            from pypdf import PdfReader

            reader = PdfReader(str(path))
            for number, page in enumerate(reader.pages, 1):
                docs.append(Document(text=page.extract_text() or "", metadata={"page_label": str(number),
                                                                                "file_name": path.name}))
        else:
            for page in load_document(path.name, path.read_bytes()):
                docs.append(Document(text=page.text, metadata={"file_name": path.name}))
    return docs


def stock(settings: Settings, files: list[Path], dataset_dir: Path, n: int, workdir: Path,
          stock_reranker: str | None = None) -> dict:
    """The stock pipeline's ingest and queries (run in its own process by :func:`run_bench`)."""
    import chromadb
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.core.schema import QueryBundle, TextNode
    from llama_index.vector_stores.chroma import ChromaVectorStore

    from rag.datasets import load_dataset
    from rag.evaluate import index_key

    embed, rerank, backend_note = _stock_models(settings, workdir, stock_reranker)
    embed.get_text_embedding_batch(["warm-up"])
    splitter = _splitter(settings)
    client = chromadb.PersistentClient(path=str(workdir / "stock"),
                                       settings=chromadb.config.Settings(anonymized_telemetry=False))

    # ingest
    started = time.perf_counter()
    docs = _stock_read(files)
    store = ChromaVectorStore(chroma_collection=client.get_or_create_collection("bench-ingest"))
    index = VectorStoreIndex.from_documents(docs, storage_context=StorageContext.from_defaults(vector_store=store),
                                            embed_model=embed, transformations=[splitter])
    wall = time.perf_counter() - started
    chunks = store._collection.count()
    pages = sum(1 for d in docs if d.text.strip())
    ingest = {"files": len(files), "pages": pages, "chunks": chunks, "wall_s": round(wall, 2),
              "pages_per_s": round(pages / wall, 2), "chunks_per_s": round(chunks / wall, 2)}
    del index

    # the query corpus, cached beside our eval indexes (embedding it is not what is measured)
    dataset = load_dataset(dataset_dir)
    cache = chromadb.PersistentClient(path=str(Path(settings.data_dir).expanduser().resolve() / "bench-stock"),
                                      settings=chromadb.config.Settings(anonymized_telemetry=False))
    name = "stock-" + index_key(dataset_dir, settings.embed_model, False, settings)[:24]
    collection = cache.get_or_create_collection(name, metadata={"hnsw:space": "cosine"})
    qstore = ChromaVectorStore(chroma_collection=collection)
    if collection.count() != len(dataset.corpus):
        cache.delete_collection(name)
        collection = cache.get_or_create_collection(name, metadata={"hnsw:space": "cosine"})
        qstore = ChromaVectorStore(chroma_collection=collection)
        nodes = [TextNode(id_=d.id, text=f"{d.title}\n{d.text}" if d.title else d.text) for d in dataset.corpus.values()]
        VectorStoreIndex(nodes, storage_context=StorageContext.from_defaults(vector_store=qstore), embed_model=embed)
    qindex = VectorStoreIndex.from_vector_store(qstore, embed_model=embed)
    retriever = qindex.as_retriever(similarity_top_k=settings.top_k)
    questions = _queries(dataset_dir, n)
    for q in questions[:2]:
        nodes = retriever.retrieve(q)
        if rerank:
            rerank.postprocess_nodes(nodes, query_bundle=QueryBundle(q))
    samples: dict[str, list[float]] = {"retrieve": [], "rerank": [], "total": []}
    for q in questions:
        t0 = time.perf_counter()
        nodes = retriever.retrieve(q)
        t1 = time.perf_counter()
        if rerank:
            nodes = rerank.postprocess_nodes(nodes, query_bundle=QueryBundle(q))
        t2 = time.perf_counter()
        samples["retrieve"].append((t1 - t0) * 1000)
        samples["rerank"].append((t2 - t1) * 1000)
        samples["total"].append((t2 - t0) * 1000)
    total = percentiles(samples["total"])
    return {
        "pipeline": "llama-index VectorStoreIndex + ChromaVectorStore + HuggingFaceEmbedding"
                    + (" + SentenceTransformerRerank" if rerank else ""),
        "reranker_backend": backend_note,
        "ingest": ingest,
        "query": {"queries": len(questions), "p50_ms": total.p50, "p95_ms": total.p95,
                  "stages": _stage_table({k: v for k, v in samples.items() if k != "total"})},
        "rss_mb": peak_rss_mb(),
    }


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


def run_bench(
    settings: Settings,
    *,
    docs: Path = DEFAULT_DOCS,
    dataset: Path = DEFAULT_DATASET,
    queries: int = 100,
    max_docs: int | None = None,
    baseline: bool = True,
    stock_reranker: str | None = None,
    progress=None,
) -> dict:
    """The whole benchmark as the ``--json`` dict (see the module docstring)."""
    docs, dataset = Path(docs), Path(dataset)
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
            report["baseline"] = _stock_subprocess(settings, files, dataset, queries, workdir, stock_reranker)
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


def _stock_subprocess(settings: Settings, files: list[Path], dataset: Path, queries: int, workdir: Path,
                      stock_reranker: str | None) -> dict:
    spec = {"settings": settings.model_dump(mode="json", exclude={"openai_api_key"}), "files": [str(f) for f in files],
            "dataset": str(dataset), "queries": queries, "workdir": str(workdir), "stock_reranker": stock_reranker}
    spec_path = workdir / "stock.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "TQDM_DISABLE": "1"}
    done = subprocess.run([sys.executable, "-m", "rag.bench", "--stock-spec", str(spec_path)], capture_output=True,
                          text=True, env=env, cwd=str(Path(__file__).resolve().parent.parent))
    if done.returncode != 0:
        raise RuntimeError(f"the stock llama-index pipeline failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _stock_main(spec_path: str) -> int:
    import logging

    logging.disable(logging.WARNING)
    spec = json.loads(Path(spec_path).read_text())
    settings = Settings(**spec["settings"])
    result = stock(settings, [Path(f) for f in spec["files"]], Path(spec["dataset"]), spec["queries"],
                   Path(spec["workdir"]), spec.get("stock_reranker"))
    print(json.dumps(result))
    return 0


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
    elif settings.reranker.strip().lower() == "none":
        from rag.evaluate import default_rerankers

        settings = settings.model_copy(update={"reranker": default_rerankers(settings)[0]})
    report = run_bench(settings, docs=Path(args.docs), dataset=Path(args.dataset), queries=args.queries,
                       max_docs=args.max_docs, baseline=not args.no_baseline, stock_reranker=args.stock_reranker,
                       progress=None if args.quiet else _stderr)
    print(json.dumps(report, ensure_ascii=False, indent=2) if args.json else summary(report))
    return 0


def register(subparsers, parent) -> None:
    p = subparsers.add_parser("bench", parents=[parent],
                              help="ingest and query speed here, against a stock llama-index pipeline")
    p.add_argument("--docs", default=str(DEFAULT_DOCS), help="documents to ingest (default: the 12 SEC 10-Q PDFs)")
    p.add_argument("--max-docs", type=int, help="only the first N documents (smoke runs)")
    p.add_argument("--dataset", default=str(DEFAULT_DATASET), help="BEIR folder for the queries (default squad11_dev)")
    p.add_argument("--queries", type=int, default=100, help="questions to time (default 100)")
    p.add_argument("--reranker", dest="reranker_name", help="reranker (default: the configured one, else the shipped default)")
    p.add_argument("--stock-reranker", metavar="PATH",
                   help="torch checkpoint for the stock SentenceTransformerRerank (default: the reranker's own "
                        "torch weights, else a same-architecture MiniLM-L6 cross-encoder; see rag.bench)")
    p.add_argument("--no-baseline", action="store_true", help="skip the stock llama-index pipeline")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=cmd_bench)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--stock-spec":
        sys.exit(_stock_main(sys.argv[2]))
    print("usage: rerank-rag bench [--json] (this module's own entry point is internal)", file=sys.stderr)
    sys.exit(2)
