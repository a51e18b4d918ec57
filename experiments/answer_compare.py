"""The extractive answer against the one it replaced (ea4b60c), on the same chunks: BENCHMARKS.md, "Answer quality".

    RAG_DATA_DIR=<cache> .venv/bin/python experiments/answer_compare.py --dataset ../shared/datasets/cmrc2018 \
        --queries 150 --relevant-docs '^TRIAL_'

Per question whose gold passage is among the default pipeline's top-n chunks: the default's extractive answer
and the old one built from those chunks. Prints contains | hit, lead | hit, characters, and the share of the
gold answer's words (BM25 terms) the answer holds: the fairer view where gold answers are whole sections.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evaluation.datasets import load_dataset  # noqa: E402
from evaluation.index import dataset_label, index_corpus  # noqa: E402
from evaluation.metrics import answer_contains, answer_lead, answer_word_recall  # noqa: E402
from rag.pipeline import RagPipeline  # noqa: E402
from rag.settings import Settings  # noqa: E402

# The answer before issue 11 (ea4b60c rag/answer.py), kept only to compare against: the sentences of the
# top 3 chunks most similar to the question, the top chunk's best first among three, in document order.
_OLD_SPLIT = re.compile(r"(?<=[.!?。！？])\s+|\n+")  # no split inside unspaced CJK text


def old_answer(question: str, chunks, embedder) -> str:
    sentences = [(n, " ".join(piece.split())) for n, chunk in enumerate(chunks[:3], 1)
                 for piece in _OLD_SPLIT.split(re.sub(r"\n(?=[a-z])", " ", chunk.text)) if len(piece) >= 20]
    sentences = [(n, s if len(s) <= 400 else s[:400].rsplit(" ", 1)[0] + " …") for n, s in sentences][:48]
    sentences = sentences or [(1, chunks[0].text.strip())]
    similarity = embedder.embed_documents([s for _, s in sentences]) @ embedder.embed_queries([question])[0]
    ranked = [int(i) for i in np.argsort(-similarity)]
    lead = next((i for i in ranked if sentences[i][0] == 1), ranked[0])
    chosen = sorted({lead, *[i for i in ranked if i != lead][:2]})
    return " ".join(f"{sentences[i][1]} [{sentences[i][0]}]" for i in chosen)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--queries", type=int, default=150)
    ap.add_argument("--relevant-docs", help="regex: only queries whose relevant documents match (held-out part)")
    args = ap.parse_args()
    settings = Settings()
    folder = Path(args.dataset)
    dataset = load_dataset(folder, name=dataset_label(folder))
    info = index_corpus(settings, folder, dataset)
    pipeline = RagPipeline(settings)
    embedder = pipeline.embedder_for(pipeline.knowledge_base(info.collection))
    totals = {"old": np.zeros(4), "new": np.zeros(4)}
    hits = 0
    for query in dataset.queries_with_qrels(args.queries, relevant_docs=args.relevant_docs):
        gold = dataset.answers.get(query.id)
        if not gold:
            continue
        result = pipeline.ask(query.text, collection=info.collection)
        if not any(c.source in dataset.relevant(query.id) for c in result.chunks):
            continue
        hits += 1
        for name, answer in (("old", old_answer(query.text, result.chunks, embedder)), ("new", result.answer)):
            totals[name] += [answer_contains(gold, answer), answer_contains(gold, answer_lead(answer)), len(answer),
                             answer_word_recall(gold, answer)]
    print(f"{dataset.name}: {hits} questions with their passage found")
    print("| answer | contains, given hit | lead contains, given hit | chars | gold words held |\n|---|---|---|---|---|")
    for name, (contains, lead, chars, share) in totals.items():
        n = max(hits, 1)
        print(f"| {name} | {contains / n:.3f} | {lead / n:.3f} | {chars / n:.0f} | {share / n:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
