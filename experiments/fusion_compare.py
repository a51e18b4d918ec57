"""Ways to fuse the dense and the BM25 ranking, compared on every dev set (first stage only, no rerank).

    RAG_DATA_DIR=<eval index cache> .venv/bin/python experiments/fusion_compare.py --queries 100 --only cisi

Per set: the first N judged queries (the held-out parts of the reranker's training sets, as in
scripts/dev_suite.py), each side's top ``first_stage_k`` from the cached corpus index
(``evaluation.index.index_corpus``), then every fusion of ``rag.retrieve.FUSIONS`` over the same two
lists. Prints MRR@5 and hit@20 (a relevant document among the reranker's 20 candidates) per set and
fusion, and writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))  # the dev suite's sets, kept there

from dev_suite import SETS  # noqa: E402

from evaluation.datasets import load_dataset  # noqa: E402
from evaluation.index import dataset_label, index_corpus  # noqa: E402
from evaluation.metrics import hit_rate, mrr  # noqa: E402
from rag.dense_index import dense_search  # noqa: E402
from rag.lexical import lexical_search  # noqa: E402
from rag.embedders.models import configured_embedder  # noqa: E402
from rag.retrieve import FUSIONS, fuse  # noqa: E402
from rag.settings import Settings  # noqa: E402
from rag.store import KnowledgeBase  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--only", nargs="*", help="labels or folders to run (default: all)")
    ap.add_argument("--out", default="runs/fusion_compare.json")
    args = ap.parse_args()
    settings = Settings()
    embedder = configured_embedder(settings)
    out = Path(args.out)
    done = json.loads(out.read_text()) if out.is_file() else {}
    depth = settings.first_stage_k
    for label, folder, held_out in SETS:
        if args.only and label not in args.only and folder not in args.only:
            continue
        path = settings.datasets_dir / folder
        dataset = load_dataset(path, name=dataset_label(path))
        info = index_corpus(settings, path, dataset)
        kb = KnowledgeBase(settings, info.collection, embed_model=embedder.name)
        queries = [q for q in dataset.queries_with_qrels(args.queries, relevant_docs=held_out) if q.text.strip()]
        sums: dict[str, list[float]] = {}
        for q in queries:
            expected = dataset.relevant(q.id)
            dense = dense_search(kb, settings, embedder.embed_queries([q.text])[0], depth)
            lexical = lexical_search(kb, settings.data_dir, q.text, depth)
            ranked = {"dense": [c.source for c in dense], "bm25": [c.source for c in lexical]}
            for fusion in FUSIONS:
                fused = fuse(fusion, {"dense": [(c.source, c.score) for c in dense],
                                      "bm25": [(c.source, c.score) for c in lexical]}, k=settings.rrf_k)
                ranked[fusion] = [doc for doc, _ in fused]
            for name, ids in ranked.items():
                sums.setdefault(name, [0.0, 0.0])
                sums[name][0] += mrr(expected, ids, 5)
                sums[name][1] += hit_rate(expected, ids, 20)  # any relevant doc among the 20 candidates
        done[label] = {name: {"mrr@5": round(m / len(queries), 3), "hit@20": round(h / len(queries), 3)}
                       for name, (m, h) in sums.items()} | {"queries": len(queries)}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(done, indent=1))
        print(label, json.dumps(done[label]), flush=True)
    names = ["dense", "bm25", *FUSIONS]
    print("\n| set | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    for label, row in done.items():
        print(f"| {label} | " + " | ".join(f"{row[n]['mrr@5']:.3f} / {row[n]['hit@20']:.3f}" for n in names) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
