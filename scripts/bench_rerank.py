#!/usr/bin/env python
"""Rerank latency: time to score a query's top-20 chunks, p50/p95 over real queries.

  .venv/bin/python scripts/bench_rerank.py --reranker runs/rerank-minilm-l6@torch --reranker rerank-minilm-l6

Candidates are the packaged MiniLM embedder's top-20 squad11_dev paragraphs (articles 38-47) for
--queries queries; each reranker scores the same lists after --warmup untimed calls. No other
work should run on the machine meanwhile: on a shared box wall times inflate, so the CPU time per
call (cpu_p50_ms; with --threads 1 it approximates the single-core latency of an idle machine) and
the 1-minute load average are printed too.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.settings import Settings  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reranker", action="append", required=True, help="NAME_OR_PATH[@torch|@onnx][#max_length]")
    ap.add_argument("--data", default=str(Settings().datasets_dir / "squad11_dev"))
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--top-k", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    from evaluation.datasets import load_dataset
    from rag.rerank import reranker_from_spec
    from training.data import MiningEmbedder

    ds = load_dataset(a.data)
    qs = ds.queries_with_qrels(relevant_docs=r"^s(3[89]|4[0-7])_")  # held-out articles 38-47
    qs = random.Random(0).sample(qs, a.queries)
    emb = MiningEmbedder()
    ids = list(ds.corpus)
    dv = emb.encode([ds.corpus[i].text for i in ids])
    top = torch.topk(emb.encode([q.text for q in qs]) @ dv.T, k=a.top_k, dim=1).indices.tolist()
    lists = [(q.text, [ds.corpus[ids[j]].text for j in row]) for q, row in zip(qs, top)]
    for spec in a.reranker:
        r = reranker_from_spec(spec, threads=a.threads)
        for q, texts in lists[: a.warmup]:
            r.score(q, texts)
        times, cpu = [], []
        for q, texts in lists:
            t, c = time.perf_counter(), time.process_time()
            r.score(q, texts)
            times.append((time.perf_counter() - t) * 1000)
            cpu.append((time.process_time() - c) * 1000)
        times.sort()
        p95 = times[min(len(times) - 1, int(round(0.95 * len(times))) - 1)]
        print(json.dumps({"reranker": spec, "backend": r.backend, "file": r.file_name, "n": len(times),
                          "top_k": a.top_k, "p50_ms": round(statistics.median(times), 1), "p95_ms": round(p95, 1),
                          "cpu_p50_ms": round(statistics.median(cpu), 1), "threads": a.threads,
                          "loadavg_1m": round(__import__("os").getloadavg()[0], 2)}),
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
