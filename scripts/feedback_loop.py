"""The feedback loop measured on a dev set that stands in for a user's collection (issue 26).

    .venv/bin/python scripts/feedback_loop.py --data-dir /tmp/feedback-loop --questions 240 --holdout 0.5

1. The stand-in's corpus (default: E-Manual QA's Samsung Smart TV manual, 259 sections) is ingested as a
   collection, one text file per section written to a scratch folder outside the checkout.
2. Its first ``--questions`` "normal" questions (file order; the paraphrased and compound ones are left out, so
   a re-wording of a held-out question never trains) are marked as a user would from the judgments: the chunk of
   the judged section that holds the gold answer (the most of its words; every chunk holding at least half of
   them) "answers it", the other chunks the Ask page showed "do not". Earlier marks of the collection go first.
3. ``training.feedback_job.start`` runs the loop the app's button runs: split by question, fine-tune a copy of the
   reranker in use, score old and new on the held-out questions and the public dev set (RAG_FEEDBACK_DEV_SET).
4. The held-out questions are scored again through ``rerank-rag eval``'s own path (``evaluate_questions``, by
   section), with the current and the fine-tuned reranker: the figure does not rest on the job's own scorer.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evaluation.datasets import load_dataset  # noqa: E402
from rag.settings import Settings  # noqa: E402


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def answering_chunks(chunk_ids: list[str], texts: dict[str, str], answers: list[str]) -> set[str]:
    """The judged section's chunks a reader would say answer the question: the one holding the most of the gold
    answer's words, and any holding at least half of them; all of them when there is no gold answer."""
    gold = set().union(*map(_words, answers)) if answers else set()
    if not gold or len(chunk_ids) == 1:
        return set(chunk_ids)
    share = {c: len(gold & _words(texts.get(c, ""))) / len(gold) for c in chunk_ids}
    best = max(share.values())
    return {c for c, v in share.items() if v == best or v >= 0.5}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True, type=Path)
    p.add_argument("--dataset", default=None, help="BEIR folder (default: <datasets>/emanual_samsung/smarttv)")
    p.add_argument("--collection", default="manual")
    p.add_argument("--questions", type=int, default=240)
    p.add_argument("--holdout", type=float, default=0.5)
    p.add_argument("--minutes", type=float, default=5.0, help="training time budget")
    p.add_argument("--dev-queries", type=int, default=100)
    a = p.parse_args()

    from ingest.pipeline import Ingestor
    from rag.feedback import FeedbackStore
    from rag.pipeline import RagPipeline
    from rag.store import KnowledgeBase
    from training.feedback import split_questions
    from training.feedback_job import start, status

    settings = Settings(data_dir=a.data_dir, collection=a.collection, feedback_holdout=a.holdout,
                        feedback_train_minutes=a.minutes, feedback_dev_queries=a.dev_queries)
    folder = Path(a.dataset) if a.dataset else Path(settings.datasets_dir) / "emanual_samsung" / "smarttv"
    ds = load_dataset(folder)
    t0 = time.time()
    scratch = a.data_dir / "corpus-files"  # outside the checkout: the dataset's text never enters the project
    if not scratch.is_dir():
        scratch.mkdir(parents=True)
        for doc in ds.corpus.values():
            (scratch / f"{doc.id}.txt").write_text(f"{doc.title}\n\n{doc.text}\n", encoding="utf-8")
    results = Ingestor(settings, a.collection).ingest_paths([scratch])
    print(f"ingest: {sum(r.status == 'ok' for r in results)} ok, {sum(r.status == 'skipped' for r in results)} "
          f"unchanged, {time.time() - t0:.0f}s", flush=True)

    raw = {json.loads(line)["id"]: json.loads(line) for line in (folder / "queries.jsonl").open(encoding="utf-8")}
    chosen = [q for q in ds.queries_with_qrels() if raw[q.id].get("type", "normal") == "normal"][:a.questions]
    kb = KnowledgeBase(settings, a.collection)
    chunks_of: dict[str, list[str]] = {}
    for doc_id in {d for q in chosen for d in ds.relevant(q.id)}:
        chunks_of[doc_id] = kb.chunks.get(where={"source": f"{doc_id}.txt"}, include=[])["ids"]
    pipeline, store = RagPipeline(settings), FeedbackStore(settings)
    store.delete(a.collection, [m.mark_id for m in store.marks(a.collection)])
    texts = store.chunk_texts(a.collection, [c for ids in chunks_of.values() for c in ids])
    t1 = time.time()
    n_marks = 0
    for q in chosen:
        relevant = answering_chunks([c for d in ds.relevant(q.id) for c in chunks_of[d]], texts,
                                    ds.answers.get(q.id, []))
        shown = pipeline.ask(q.text, collection=a.collection, generate=False)
        for chunk in relevant:
            store.add(a.collection, q.text, chunk_id=chunk, label="relevant", reranker=shown.reranker, by="loop")
            n_marks += 1
        for hit in shown.chunks:
            if hit.chunk_id not in relevant:
                store.add(a.collection, q.text, chunk_id=hit.chunk_id, label="irrelevant", reranker=shown.reranker,
                          by="loop")
                n_marks += 1
    print(f"marks: {n_marks} on {len(chosen)} questions in {time.time() - t1:.0f}s", flush=True)

    t2 = time.time()
    job = start(settings, a.collection, background=False, log=lambda m: print(m, flush=True))
    done = status(job)
    print(json.dumps({k: done.get(k) for k in ("state", "base", "steps", "train_seconds", "seconds", "reranker",
                                               "result")}, indent=1), flush=True)
    print(f"job: {time.time() - t2:.0f}s", flush=True)

    # The held-out questions again, through rerank-rag eval's path, by section.
    from evaluation.run import evaluate_questions

    _, held = split_questions(list(store.trainable_questions(a.collection)), a.holdout)
    by_text = {q.text: q for q in chosen}
    questions_file = a.data_dir / "held-out-questions.jsonl"
    questions_file.write_text("".join(json.dumps({"question": t, "expected_source": [
        f"{d}.txt" for d in sorted(ds.relevant(by_text[t].id))]}) + "\n" for t in held), encoding="utf-8")
    for name in (settings.reranker, done["reranker"]):
        report = evaluate_questions(settings.model_copy(update={"reranker": name}), questions_file,
                                    collection=a.collection, rerankers=[name], first_stages=["hybrid"])
        for run in report.runs:
            print(f"eval --questions ({len(held)} held out) {run.name}: MRR@5 {run.mrr:.4f}, hit@5 "
                  f"{run.hit_rate:.4f} over {run.queries} questions", flush=True)
    print(f"total {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
