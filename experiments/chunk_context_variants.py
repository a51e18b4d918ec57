"""Which reader of the context line helps: BM25 alone, BM25 and the reranker, the embedder and BM25 (issue 33).

    nice -n 10 .venv/bin/python experiments/chunk_context_variants.py --off-store /tmp/md-off \\
        --identity-store /tmp/md-identity --work /tmp/md-variants

Reads two stores that ``scripts/multidoc_check.py`` filled with the same filings, one with
``RAG_CHUNK_CONTEXT=off`` and one with ``identity``, and scores (as that script does) three more variants:

* ``bm25``: the off store's vectors (text alone), the context in its metadata (found by
  :func:`ingest.recontext.recontext`, the vectors kept), BM25 rebuilt over context + text, the reranker reading
  the text alone;
* ``bm25+rerank``: the same store, the reranker reading context + text;
* ``embed+bm25``: the identity store, the reranker reading the text alone.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from multidoc_check import score  # noqa: E402

from evaluation.datasets import load_answers, load_dataset  # noqa: E402
from ingest.loaders import read_document  # noqa: E402
from ingest.recontext import recontext  # noqa: E402
from rag.lexical import rebuild as rebuild_lexical  # noqa: E402
from rag.pipeline import RagPipeline  # noqa: E402
from rag.settings import Settings  # noqa: E402
from rag.store import KnowledgeBase, StoredChunk  # noqa: E402


def keep_vectors(kb: KnowledgeBase):
    """An ``embed`` for recontext that returns each chunk's stored vector (its text alone embedded)."""
    rows = kb.chunks.get(include=["documents", "embeddings"])
    stored = dict(zip(rows["documents"], rows["embeddings"], strict=True))
    return lambda read: [stored[text.split("\n", 1)[1]] for text in read]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--off-store", required=True)
    ap.add_argument("--identity-store", help="the store for embed+bm25")
    ap.add_argument("--variants", nargs="*", default=["bm25", "bm25+rerank", "embed+bm25"])
    ap.add_argument("--queries", type=int, default=None)
    ap.add_argument("--only", nargs="*", help="the filings the stores hold (as multidoc_check --only)")
    ap.add_argument("--work", required=True, help="a folder for the bm25 variant's copy of the off store")
    ap.add_argument("--collection", default="multidoc")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    base = Settings(collection=args.collection)
    folder = base.datasets_dir / "pdf_docugami_sec10q"
    dataset, answers = load_dataset(folder), load_answers(folder / "answers.jsonl")
    docs = sorted((d for d in dataset.corpus.values() if not args.only or d.id in args.only), key=lambda d: d.id)
    names = {doc.id: doc.id for doc in docs}
    pages = {doc.id: read_document(doc.id, doc.path.read_bytes()).pages for doc in docs}  # read once for every label
    queries = [q for q in dataset.queries_with_qrels() if dataset.relevant(q.id) & set(names)][: args.queries]
    work = Path(args.work)
    if {"bm25", "bm25+rerank"} & set(args.variants):
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(args.off_store, work)
        kb = KnowledgeBase(base.model_copy(update={"data_dir": work}))
        recontext(kb, keep_vectors(kb))
        rebuild_lexical(kb, work)
    text_alone = property(lambda chunk: chunk.text)
    results = {}
    reads_context = StoredChunk.read_text
    for label, data_dir, rerank_context in (("bm25", work, False), ("bm25+rerank", work, True),
                                            ("embed+bm25", Path(args.identity_store or "."), False)):
        if label not in args.variants:
            continue
        StoredChunk.read_text = reads_context if rerank_context else text_alone  # BM25's index is built already
        pipeline = RagPipeline(base.model_copy(update={"data_dir": data_dir}))
        results[label] = score(pipeline, dataset, answers, pages, names, queries)
        for run, row in results[label].items():
            print(f"| {label} {run} | {row['top1_asked']:.3f} | {row['top5_share']:.3f} | {row['page_mrr5']:.3f} "
                  f"({row['paged_queries']}) |", flush=True)
    StoredChunk.read_text = reads_context
    if args.out:
        out = Path(args.out)
        out.write_text(json.dumps((json.loads(out.read_text()) if out.is_file() else {}) | results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
