"""How much of the gold answer the extractive answer's lead holds, and how long the answer is, on every dev set
with answers (issue 24 §2).

    RAG_DATA_DIR=<cache> .venv/bin/python scripts/answer_focus.py --queries 120 --cache /tmp/answer-focus

Per set, the first ``--queries`` questions with a gold answer are asked through the default pipeline
(``generate=False``); on those whose relevant document is among the returned chunks ("given hit") it reports
``lead_contains_given_hit`` (the text before the first [n] holds a gold answer), ``answer_word_recall_given_hit``
(the share of the gold answer's words the answer holds) and ``contains_given_hit``; ``answer_chars`` is over
every question with a gold answer, as in ``rerank-rag eval --answers``. The definitions are
:mod:`evaluation.metrics`'.

The chunks and each sentence scorer's raw readings (:class:`rag.extract.RawScores`) are cached under
``--cache``, so a change to how the answer is put together (:func:`rag.extract.compose_answer`) or how the
scorers are mixed (:func:`rag.extract.mix_scores`) is measured again in seconds on the very same chunks;
``--rescore`` scores again (a change to the scorers themselves).
"""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evaluation.datasets import load_dataset  # noqa: E402
from evaluation.index import dataset_label, index_corpus  # noqa: E402
from evaluation.metrics import answer_contains, answer_lead, answer_word_recall  # noqa: E402
from rag import extract  # noqa: E402
from rag.pipeline import RagPipeline  # noqa: E402
from rag.settings import Settings  # noqa: E402

SETS = ["xquad/en", "xquad/zh", "squad11_dev", "cmrc2018", "dureader_robust_dev", "emanual_samsung/s10",
        "emanual_samsung/smarttv", "pdf_docugami_sec10q"]


def _scored(pipeline: RagPipeline, question: str, chunks) -> dict:
    """What extract_answer computes before it composes: the sentences, candidates, passages' raw scores."""
    chunks = list(chunks)[:extract.ANSWER_CHUNKS]
    sentences = extract.sentences_of(chunks)
    candidates = extract.candidates_of(sentences)
    if not candidates:
        return {"sentences": sentences, "candidates": [], "raw": None, "context_at": []}
    reranker = pipeline._reranker_for(question, True)[0]
    texts, context_at = extract._passages(sentences, candidates)
    embedder = pipeline.embedder
    documents = embedder.embed_documents(texts) if reranker is None else None
    raw = extract.raw_scores(question, chunks, sentences, candidates, texts, reranker, embedder, documents)
    return {"sentences": sentences, "candidates": candidates, "raw": raw, "context_at": context_at}


def collect(settings: Settings, name: str, root: Path, queries: int, cache: Path, rescore: bool) -> list[dict]:
    """The questions of one set (cached): question, gold answers, hit, the chunks and their raw scores."""
    path = cache / (name.replace("/", "_") + ".pkl")
    if path.exists() and not rescore:
        return pickle.loads(path.read_bytes())
    folder = root / name
    dataset = load_dataset(folder, name=dataset_label(folder))
    info = index_corpus(settings, folder, dataset)
    pipeline = RagPipeline(settings)
    rows = []
    for query in dataset.queries_with_qrels(None):
        gold = dataset.answers.get(query.id)
        if not gold:
            continue
        result = pipeline.ask(query.text, collection=info.collection, generate=False)
        hit = any(c.source in dataset.relevant(query.id) for c in result.chunks)
        rows.append({"question": query.text, "gold": gold, "hit": hit, "chunks": result.chunks,
                     **(_scored(pipeline, query.text, result.chunks) if result.chunks else {"candidates": []})})
        if len(rows) >= queries:
            break
    cache.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(rows))
    return rows


def answer_of(row: dict) -> str:
    """The extractive answer as the product composes it now, from the cached scores."""
    if not row["chunks"]:
        return extract.NOTHING_FOUND
    if not row["candidates"]:
        return extract.extract_answer(row["question"], row["chunks"]).answer  # the best chunk's start
    scores = extract.mix_scores(row["raw"], row["context_at"])
    return extract.compose_answer(row["sentences"], row["candidates"], [float(x) for x in scores]).answer


def measure(rows: list[dict]) -> dict:
    answers = [answer_of(row) for row in rows]
    hits = [i for i, row in enumerate(rows) if row["hit"]]
    n = max(len(hits), 1)
    return {"questions": len(rows), "hits": len(hits),
            "lead_contains_given_hit": sum(answer_contains(rows[i]["gold"], answer_lead(answers[i])) for i in hits) / n,
            "answer_word_recall_given_hit": sum(answer_word_recall(rows[i]["gold"], answers[i]) for i in hits) / n,
            "contains_given_hit": sum(answer_contains(rows[i]["gold"], answers[i]) for i in hits) / n,
            "answer_chars": sum(len(a) for a in answers) / max(len(answers), 1)}


def parser(description: str) -> argparse.ArgumentParser:
    """The options of this script (and of the experiments that read its cache)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--datasets-root", default="../shared/datasets")
    ap.add_argument("--sets", nargs="*", default=SETS)
    ap.add_argument("--queries", type=int, default=120)
    ap.add_argument("--cache", default="/tmp/answer-focus")
    return ap


def header(first: str) -> str:
    """The Markdown table's head: ``first`` (the set, and what varies, "|"-separated), then the figures."""
    head = f"| {first} | hits | lead ∋ gold given hit | gold words held given hit | ∋ gold given hit | chars |"
    return head + "\n" + "|---" * (head.count("|") - 1) + "|"


def table_row(first: str, m: dict) -> str:
    """One Markdown row of :func:`measure`'s figures after ``first`` (the set, and what varies)."""
    return (f"| {first} | {m['hits']} | {m['lead_contains_given_hit']:.3f} | {m['answer_word_recall_given_hit']:.3f} | "
            f"{m['contains_given_hit']:.3f} | {m['answer_chars']:.0f} |")


def main() -> int:
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--rescore", action="store_true", help="score the sentences again (the scorers changed)")
    args = ap.parse_args()
    settings = Settings()
    print(header("set | questions"))
    for name in args.sets:
        rows = collect(settings, name, Path(args.datasets_root), args.queries, Path(args.cache), args.rescore)
        m = measure(rows)
        print(table_row(f"{name} | {m['questions']}", m), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
