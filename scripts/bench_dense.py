"""Exact dense search against Chroma's HNSW, at several collection sizes: recall@k against the exact top-k, query
p50/p95 and memory (issue 34; BENCHMARKS.md and docs/dense.md quote it).

    python scripts/bench_dense.py --vectors DOCS.npy --queries QUERIES.npy [--sizes 10000 100000 500000]

``DOCS.npy``/``QUERIES.npy``: real embeddings (float32, one row each) of a corpus and of its questions, e.g. made by
``--embed DATASET`` (the default embedder over ``<datasets_dir>/DATASET``). A size above the real vectors' count is
filled with jittered copies of them (gaussian noise, renormalised): clustered as real embeddings are, which is what
makes approximate search miss; random vectors would flatter HNSW. Each HNSW configuration gets its own Chroma
collection, built once, then searched in a fresh client (as a reopened store is: the graph is rebuilt on open).
Times are this machine's under its load: read the ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evaluation.machine import load_average  # noqa: E402
from evaluation.metrics import percentiles  # noqa: E402
from rag.dense_index import DenseIndex  # noqa: E402
from rag.settings import Settings  # noqa: E402

CONFIGS = {  # Chroma 1.5.9's defaults, and ours (Settings.hnsw_*)
    "chroma default (M 16, efc 100, ef 100)": {"max_neighbors": 16, "ef_construction": 100, "ef_search": 100},
}


def embed(dataset: str, out: Path, limit_queries: int) -> tuple[Path, Path]:
    """Embed a dataset's corpus (title + text) and first questions with the default embedder."""
    from rag.embedders.models import configured_embedder

    settings = Settings()
    folder = settings.datasets_dir / dataset
    embedder = configured_embedder(settings)
    texts = [f"{d.get('title') or ''}\n{d.get('text') or ''}"[:1500]
             for d in map(json.loads, (folder / "corpus.jsonl").read_text(encoding="utf-8").splitlines())]
    questions = [json.loads(line)["text"] for line in (folder / "queries.jsonl").read_text().splitlines()]
    docs = np.vstack([embedder.embed_documents(texts[i:i + 256]) for i in range(0, len(texts), 256)])
    out.mkdir(parents=True, exist_ok=True)
    slug = dataset.replace("/", "-")
    np.save(out / f"{slug}-docs.npy", docs.astype(np.float32))
    np.save(out / f"{slug}-queries.npy", embedder.embed_queries(questions[:limit_queries]).astype(np.float32))
    return out / f"{slug}-docs.npy", out / f"{slug}-queries.npy"


def grow(vectors: np.ndarray, size: int, seed: int = 0, noise: float = 0.02) -> np.ndarray:
    """``size`` rows: the real vectors, then jittered copies of them."""
    if size <= len(vectors):
        return vectors[:size]
    rng = np.random.default_rng(seed)
    extra = vectors[np.arange(size - len(vectors)) % len(vectors)]
    extra = extra + rng.normal(0.0, noise, extra.shape).astype(np.float32)
    return np.vstack([vectors, extra / np.linalg.norm(extra, axis=1, keepdims=True)]).astype(np.float32)


def timed(search, queries: np.ndarray) -> tuple[list[list[str]], dict]:
    """Each search's wall time, and this process's CPU time: on a shared machine the wall time measures the load,
    the CPU time (with one BLAS thread: OPENBLAS_NUM_THREADS=1) the work."""
    found, ms, cpu = [], [], []
    for q in queries:
        t, c = time.perf_counter(), time.process_time()
        found.append(search(q))
        ms.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    p, c = percentiles(ms), percentiles(cpu)
    return found, {"p50_ms": round(p.p50, 2), "p95_ms": round(p.p95, 2), "cpu_p50_ms": round(c.p50, 2),
                   "cpu_p95_ms": round(c.p95, 2)}


def hnsw_run(vectors: np.ndarray, ids: list[str], queries: np.ndarray, k: int, config: dict, folder: Path) -> dict:
    """Build a Chroma collection with ``config``, query it in the building client, then in a reopened one."""
    import chromadb

    telemetry = chromadb.config.Settings(anonymized_telemetry=False)
    path = folder / f"m{config['max_neighbors']}-c{config['ef_construction']}-s{config['ef_search']}-{len(ids)}"
    client = chromadb.PersistentClient(path=str(path), settings=telemetry)
    collection = client.create_collection("bench", configuration={"hnsw": {"space": "cosine", **config}},
                                          embedding_function=None)
    t = time.perf_counter()
    batch = client.get_max_batch_size()
    for start in range(0, len(ids), batch):
        collection.add(ids=ids[start:start + batch], embeddings=vectors[start:start + batch])
    out: dict = {"build_s": round(time.perf_counter() - t, 1)}

    def search_with(collection):
        return lambda q: collection.query(query_embeddings=[q], n_results=k, include=[])["ids"][0]

    out["built"], _ = timed(search_with(collection), queries)
    del client, collection
    chromadb.api.client.SharedSystemClient.clear_system_cache()  # a reopened store: the graph loads from disk
    collection = chromadb.PersistentClient(path=str(path), settings=telemetry).get_collection("bench")
    collection.query(query_embeddings=[queries[0]], n_results=k)  # the load, not a query
    out["reopened"], times = timed(search_with(collection), queries)
    return {**out, **times}


def mrr_at(found: list[list[str]], relevant: list[set[str]], n: int = 5) -> float:
    ranks = [next((1 / r for r, chunk in enumerate(f[:n], 1) if chunk in rel), 0.0) for f, rel in zip(found, relevant)]
    return round(float(np.mean(ranks)), 4)


def relevant_ids(dataset: str, count: int) -> list[set[str]]:
    """The qrels of the first ``count`` questions of ``dataset``, as row ids ``c<corpus line>`` (as embed wrote)."""
    folder = Settings().datasets_dir / dataset
    row = {json.loads(line)["id"]: f"c{i:07d}"
           for i, line in enumerate((folder / "corpus.jsonl").read_text(encoding="utf-8").splitlines())}
    order = [json.loads(line)["id"] for line in (folder / "queries.jsonl").read_text().splitlines()][:count]
    rel: dict[str, set[str]] = {}
    for line in (folder / "qrels.tsv").read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[1] in row and parts[2].strip() not in ("0", "score"):
            rel.setdefault(parts[0], set()).add(row[parts[1]])
    return [rel.get(q, set()) for q in order]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vectors", type=Path)
    parser.add_argument("--queries", type=Path)
    parser.add_argument("--embed", metavar="DATASET", help="embed this dataset first (writes --out/*.npy)")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "bench-dense")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 500_000])
    parser.add_argument("--hnsw-max-size", type=int, default=100_000, help="build HNSW up to this size only")
    parser.add_argument("--n-queries", type=int, default=200)
    parser.add_argument("--configs", nargs="+", choices=("default", "ours"), default=["default", "ours"],
                        help="which HNSW configurations to build (a build at 500k takes long on small machines)")
    parser.add_argument("-k", type=int, default=50)
    parser.add_argument("--qrels", metavar="DATASET", help="also MRR@5 of each side, the vectors being DATASET's "
                        "corpus in file order and the queries its first questions (as --embed writes them)")
    args = parser.parse_args()
    if args.embed:
        args.vectors, args.queries = embed(args.embed, args.out, args.n_queries)
    settings = Settings()
    ours = {"max_neighbors": settings.hnsw_max_neighbors, "ef_construction": settings.hnsw_ef_construction,
            "ef_search": settings.hnsw_ef_search}
    configs = {**(CONFIGS if "default" in args.configs else {}),
               **({f"ours (M {ours['max_neighbors']}, efc {ours['ef_construction']}, ef {ours['ef_search']})": ours}
                  if "ours" in args.configs else {})}
    real = np.load(args.vectors).astype(np.float32)
    queries = np.load(args.queries).astype(np.float32)[:args.n_queries]
    relevant = relevant_ids(args.qrels, len(queries)) if args.qrels else None
    judged = [i for i, rel in enumerate(relevant or []) if rel]
    rows = []
    for size in args.sizes:
        vectors = grow(real, size)
        ids = [f"c{i:07d}" for i in range(size)]
        index = DenseIndex.build(ids, vectors, ["s"] * size)
        exact, times = timed(lambda q: [i for i, _ in index.search(q, args.k)], queries)
        row = {"chunks": size, "real_vectors": min(size, len(real)), "exact": times,
               "exact_matrix_mb": round(index.vectors.nbytes / 2**20, 1), "hnsw": {}}
        if relevant:
            row["exact"]["mrr_at_5"] = mrr_at([exact[i] for i in judged], [relevant[i] for i in judged])
        if size <= args.hnsw_max_size:
            for name, config in configs.items():
                run = hnsw_run(vectors, ids, queries, args.k, config, args.out)
                for when in ("built", "reopened"):
                    found = run.pop(when)
                    run[f"{when}_recall_at_k"] = round(float(np.mean([len(set(f) & set(e)) / len(e)
                                                                      for f, e in zip(found, exact, strict=True)])), 4)
                    run[f"{when}_top1_agrees"] = round(float(np.mean([f[:1] == e[:1] for f, e in zip(found, exact)])), 4)
                    if relevant:
                        run[f"{when}_mrr_at_5"] = mrr_at([found[i] for i in judged], [relevant[i] for i in judged])
                row["hnsw"][name] = run
        row["load_avg"] = load_average()
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps({"k": args.k, "queries": len(queries), "vectors": str(args.vectors), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
