"""First-stage MRR@5 across languages: XQuAD's Chinese questions against its English paragraphs and the reverse
(the two folders are parallel: the same ids), with BM25 weighed by how much of the question the collection's words
cover (Settings.bm25_coverage_full) and without (0), beside the monolingual pairs as the check that nothing else moved.

    RAG_DATA_DIR=/tmp/xl-cache .venv/bin/python experiments/crosslingual_compare.py --queries 200

Hybrid retrieval through rag.retrieve.retrieve (the product's path), top 5, no rerank.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evaluation.datasets import load_dataset  # noqa: E402
from evaluation.index import dataset_label, index_corpus  # noqa: E402
from evaluation.metrics import mrr  # noqa: E402
from rag.embedders.models import configured_embedder  # noqa: E402
from rag.retrieve import retrieve  # noqa: E402
from rag.settings import Settings  # noqa: E402
from rag.store import KnowledgeBase  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--also", type=float, nargs="*", default=[], help="more bm25_coverage_full values to measure")
    ap.add_argument("--xquad", type=Path, default=Settings().datasets_dir / "xquad")
    args = ap.parse_args()
    settings = Settings()
    embedder = configured_embedder(settings)
    report = {}
    for corpus_lang in ("en", "zh"):
        folder = args.xquad / corpus_lang
        corpus = load_dataset(folder, name=dataset_label(folder))
        info = index_corpus(settings, folder, corpus)
        kb = KnowledgeBase(settings, info.collection, embed_model=embedder.name)
        for question_lang in ("zh", "en"):
            questions = load_dataset(args.xquad / question_lang)
            queries = list(questions.queries_with_qrels(args.queries))
            row = {}
            for full in sorted({0.0, settings.bm25_coverage_full, *args.also}):
                tuned = settings.model_copy(update={"bm25_coverage_full": full})
                total = 0.0
                for query in queries:
                    found = retrieve(query.text, kb, embedder, tuned, mode="hybrid", top_k=5).candidates
                    total += mrr(questions.relevant(query.id), [c.chunk.source for c in found], k=5)
                row[f"coverage_full={full:g}"] = round(total / len(queries), 4)
            report[f"{question_lang} questions -> {corpus_lang} paragraphs"] = row
            print(json.dumps({f"{question_lang}->{corpus_lang}": row}), flush=True)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
