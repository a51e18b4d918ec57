#!/usr/bin/env python
"""What HTTP adds to a rerank: POST /v1/rerank of 20 documents vs ``reranker.score`` in process.

  .venv/bin/python scripts/bench_api.py [--calls 30] [--docs 20]

Starts `rerank-rag serve` (no keys, loopback, a temp store) in its own process, then alternates the
two calls on the same inputs, one keep-alive client, after a few untimed warm-up calls each: every
query's 20 documents are the first paragraphs of squad11_dev (``../shared/datasets``) when present,
else the sample documents' lines. Prints p50/p95 of each, the server's own rerank time (``meta``), and
the difference, i.e. the HTTP overhead (JSON, the event loop, the worker pool hand-off). On a shared
machine wall times inflate: the 1-minute load average is printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.helpers import DATASETS, SAMPLE, free_port  # noqa: E402


def inputs(n_docs: int, n_queries: int) -> list[tuple[str, list[str]]]:
    squad = DATASETS / "squad11_dev"
    if (squad / "corpus.jsonl").is_file():
        with open(squad / "corpus.jsonl") as corpus:
            texts = [json.loads(line)["text"] for _, line in zip(range(n_docs * 4), corpus, strict=False)]
        with open(squad / "queries.jsonl") as queries:
            questions = [json.loads(line)["text"] for _, line in zip(range(n_queries), queries, strict=False)]
    else:
        texts = [line.strip() for p in sorted(SAMPLE.glob("*.*")) if p.suffix in {".md", ".txt"}
                 for line in p.read_text().splitlines() if len(line.strip()) > 25]
        questions = ["How long does the battery take to charge?", "What is the refund policy?"] * n_queries
    return [(questions[i % len(questions)], [texts[(i + j) % len(texts)] for j in range(n_docs)])
            for i in range(n_queries)]


def pct(values: list[float]) -> str:
    return f"p50 {np.percentile(values, 50):7.1f} ms   p95 {np.percentile(values, 95):7.1f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=30)
    ap.add_argument("--docs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()

    from rag.rerank import load_reranker

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")} | {"HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as store:
        server = subprocess.Popen([str(Path(sys.executable).parent / "rerank-rag"), "serve", "--port", str(port),
                                   "--data-dir", store], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 300
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if server.poll() is not None or time.time() > deadline:
                    print("error: the API server did not start", file=sys.stderr)
                    return 1
                time.sleep(0.5)
            reranker = load_reranker("rerank-minilm-l6")
            runs = inputs(args.docs, args.calls + args.warmup)
            local, remote, server_side = [], [], []
            with httpx.Client(base_url=url, timeout=60) as client:
                for n, (query, docs) in enumerate(runs):
                    t = time.perf_counter()
                    scores = reranker.score(query, docs)
                    local_ms = (time.perf_counter() - t) * 1000
                    t = time.perf_counter()
                    reply = client.post("/v1/rerank", json={"model": "rerank-minilm-l6", "query": query,
                                                            "documents": docs})
                    remote_ms = (time.perf_counter() - t) * 1000
                    reply.raise_for_status()
                    body = reply.json()
                    assert [r["index"] for r in body["results"]] == sorted(range(len(docs)), key=lambda i: -scores[i])
                    if n >= args.warmup:
                        local.append(local_ms)
                        remote.append(remote_ms)
                        server_side.append(body["meta"]["rerank_rag"]["rerank_ms"])
        finally:
            server.terminate()
            server.wait(timeout=30)

    print(f"rerank of {args.docs} documents, {args.calls} calls each, rerank-minilm-l6 (int8 ONNX), "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    print(f"  in process  reranker.score   {pct(local)}")
    print(f"  HTTP        POST /v1/rerank  {pct(remote)}")
    print(f"    of which the server's score call  {pct(server_side)}")
    overhead = [r - s for r, s in zip(remote, server_side, strict=True)]
    print(f"  HTTP overhead (round trip - server's score)  {pct(overhead)}")
    print(f"  HTTP - in process (p50)  {np.percentile(remote, 50) - np.percentile(local, 50):+.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
