"""Marks as memory (issue 39) measured where questions share answers: does a mark help the next question at once?

    nice -n 10 .venv/bin/python scripts/feedback_memory.py --data-dir /tmp/feedback-memory

For each set (E-Manual's Smart TV manual, its normal and paraphrased questions, several per section; SQuAD dev,
the first ``--squad-paragraphs`` paragraphs with at least three questions each, every one of their questions):

1. The corpus is ingested as a collection (one text file per document, in a scratch folder outside the checkout).
2. A share of the questions (``--marked``, by hash; on E-Manual the normal ones only) is *marked*: each one's
   gold chunk (the gold document's chunk holding the most of the gold answer's words,
   :func:`scripts.feedback_loop.answering_chunks`) "answers it". With ``--wrong`` a share of the marked questions
   (by hash) mark instead the best-ranked chunk the app showed them that is of no gold document: a wrong mark.
3. Every other question is asked: *re-worded* when it is E-Manual's paraphrase of a marked question (the same
   gold answer: the colleague who asks it in other words), *shared* when one of its gold documents is a marked
   question's, *unrelated* when none is; each in the *dev* or the *test* split by its gold document's hash.
4. MRR@5 by gold document, before (no marks) and after, through the pipeline's own ask (``generate=False``).
   The threshold and weight (``RAG_FEEDBACK_MEMORY_THRESHOLD``, ``RAG_FEEDBACK_MEMORY_WEIGHT``) are chosen on dev
   only: the highest worst-set gain of the re-worded and shared questions among the settings that lower no set's
   unrelated questions by more than ``--tolerance``, with right marks and with ``--wrong``; the test split is
   reported.

The first stage's candidates and the reranker's logits of a (question, chunk) pair are kept for the run, so
that each setting of the grid costs only what changes (the marks' lookup and the pairs they bring).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evaluation.datasets import load_dataset  # noqa: E402
from evaluation.metrics import mrr  # noqa: E402
from rag.settings import Settings  # noqa: E402
from scripts.feedback_loop import answering_chunks  # noqa: E402


def _h(text: str) -> float:
    """A stable number in [0, 1) for a text: the split and the choice of marked documents."""
    return int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:8], 16) / 16 ** 8


class _KeptLogits:
    """The reranker, its logits kept per (question, chunk text) for the run (a grid asks the same pairs again)."""

    def __init__(self, inner) -> None:
        self.inner, self.kept = inner, {}
        self.name, self.info, self.path = inner.name, inner.info, inner.path

    def logits(self, query, texts):
        missing = [t for t in dict.fromkeys(texts) if (query, t) not in self.kept]
        if missing:
            self.kept.update(zip(((query, t) for t in missing), self.inner.logits(query, missing), strict=True))
        return [self.kept[(query, t)] for t in texts]

    def readable(self, logits):
        return self.inner.readable(logits)

    def score(self, query, texts):
        return self.readable(self.logits(query, texts))


class _KeptVectors:
    """The embedder, each question's vector kept for the run (the marks' lookup embeds the question asked)."""

    def __init__(self, inner) -> None:
        self.inner, self.kept, self.name = inner, {}, inner.name

    def embed_queries(self, texts):
        import numpy as np

        for text in texts:
            if text not in self.kept:
                self.kept[text] = self.inner.embed_queries([text])[0]
        return np.array([self.kept[t] for t in texts])

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _keep_first_stage() -> None:
    """The first stage's candidates kept per question for the run: marks change only what follows it."""
    import rag.pipeline

    original, kept = rag.pipeline.retrieve, {}

    def retrieve(question, kb, embedder, settings, *, mode, top_k, sources=None):
        key = (kb.name, question, mode, top_k, tuple(sources or ()))
        if key not in kept:
            kept[key] = original(question, kb, embedder, settings, mode=mode, top_k=top_k, sources=sources)
        return kept[key]

    rag.pipeline.retrieve = retrieve


def load_set(name: str, settings: Settings, paragraphs: int):
    """(dataset, questions to use, doc ids to ingest, the questions that may be marked, re-worded question id ->
    the question it re-words) of one set."""
    root = Path(settings.datasets_dir)
    if name == "emanual":
        folder = root / "emanual_samsung" / "smarttv"
        ds = load_dataset(folder)
        raw = {json.loads(line)["id"]: json.loads(line) for line in (folder / "queries.jsonl").open(encoding="utf-8")}
        questions = [q for q in ds.queries_with_qrels() if raw[q.id].get("type") in ("normal", "paraphrased")]
        normal = {q.id for q in questions if raw[q.id].get("type") == "normal"}
        first_with = {}  # a paraphrase re-words the normal question with the same gold answer
        for q in questions:
            if q.id in normal:
                first_with.setdefault(tuple(ds.answers.get(q.id, [])), q.id)
        reworded = {q.id: first_with[tuple(ds.answers.get(q.id, []))] for q in questions
                    if q.id not in normal and tuple(ds.answers.get(q.id, [])) in first_with}
        return ds, questions, sorted(ds.corpus), normal, reworded
    ds = load_dataset(root / "squad11_dev")
    by_doc: dict[str, list] = {}
    for q in ds.queries_with_qrels():
        by_doc.setdefault(min(ds.relevant(q.id)), []).append(q)
    docs = [d for d in ds.corpus if len(by_doc.get(d, [])) >= 3][:paragraphs]
    questions = [q for d in docs for q in by_doc[d]]
    return ds, questions, docs, {q.id for q in questions}, {}


def plan(ds, questions, markable: set[str], share: float, reworded: dict[str, str]):
    """(marked questions, asked: [(question, group, split)]): a ``share`` of the markable questions (by hash)
    is marked; the others are asked: re-worded (a re-wording of a marked question), shared (a gold document of
    a marked question) or unrelated; dev or test by their gold document's hash."""
    marked = [q for q in questions if q.id in markable and _h("mark:" + q.id) < share]
    covered = set().union(*(ds.relevant(q.id) for q in marked))
    chosen = {q.id for q in marked}

    def group(q) -> str:
        if reworded.get(q.id) in chosen:
            return "re-worded"
        return "shared" if ds.relevant(q.id) & covered else "unrelated"

    asked = [(q, group(q), "dev" if _h("split:" + min(ds.relevant(q.id))) < 0.5 else "test")
             for q in questions if q.id not in chosen]
    return marked, asked


def store_marks(store, name: str, ds, marked, wrong: float, shown: dict) -> int:
    """Mark each marked question's gold chunk as answering it; a ``wrong`` share (by hash) marks instead the
    best-ranked chunk ``shown`` for it that is of no gold document. Returns how many marks are wrong."""
    from rag.store import KnowledgeBase

    store.delete(name, [m.mark_id for m in store.marks(name)])
    kb = KnowledgeBase(store.settings, name)
    chunks_of = {d: kb.chunks.get(where={"source": f"{d}.txt"}, include=[])["ids"]
                 for q in marked for d in ds.relevant(q.id)}
    texts = store.chunk_texts(name, [c for ids in chunks_of.values() for c in ids])
    n_wrong = 0
    for q in marked:
        gold = ds.relevant(q.id)
        chunks = answering_chunks([c for d in sorted(gold) for c in chunks_of[d]], texts, ds.answers.get(q.id, []))
        if wrong and _h("wrong:" + q.id) < wrong:
            miss = next((c.chunk_id for c in shown[q.id].chunks if c.source.removesuffix(".txt") not in gold), None)
            if miss:
                chunks, n_wrong = [miss], n_wrong + 1
        for chunk in chunks:
            store.add(name, q.text, chunk_id=chunk, label="relevant", by="loop")
    return n_wrong


_KEPT: list = []  # the one reranker of the run, its logits kept


def pipeline_for(base: Settings, threshold: float, weight: float):
    """The pipeline with this memory setting, its reranker the run's (logits kept)."""
    from rag.pipeline import RagPipeline

    pipeline = RagPipeline(base.model_copy(update={"feedback_memory_threshold": threshold,
                                                   "feedback_memory_weight": weight}))
    if not _KEPT:
        _KEPT.extend([_KeptLogits(pipeline.reranker), _KeptVectors(pipeline.embedder)])
    pipeline.reranker_for = lambda collection=None: _KEPT[0]
    pipeline.embedder_for = lambda kb: _KEPT[1]
    return pipeline


MOVED: list[int] = [0]  # questions whose chunks marks moved, since the last look


def ask_all(pipeline, collection: str, asked, ds) -> dict[str, float]:
    """question id -> MRR@5 by gold document."""
    out = {}
    for q, _, _ in asked:
        result = pipeline.ask(q.text, collection=collection, generate=False)
        out[q.id] = mrr(ds.relevant(q.id), [c.source.removesuffix(".txt") for c in result.chunks], k=5)
        MOVED[0] += any(c.marks_score for c in result.candidates)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True, type=Path)
    p.add_argument("--sets", default="emanual,squad")
    p.add_argument("--squad-paragraphs", type=int, default=150)
    p.add_argument("--marked", type=float, default=0.3, help="share of the (E-Manual: normal) questions marked")
    p.add_argument("--wrong", type=float, default=0.25, help="share of marks on a wrong chunk, the second condition")
    p.add_argument("--limit", type=int, default=80, help="questions asked per set, split and group (at most)")
    p.add_argument("--thresholds", default="0.88,0.9,0.92,0.94,0.96")
    p.add_argument("--weights", default="0.5,1.0,2.0")
    p.add_argument("--tolerance", type=float, default=0.005, help="largest fall of unrelated questions' MRR@5")
    a = p.parse_args()

    from ingest.pipeline import Ingestor
    from rag.feedback import FeedbackStore

    _keep_first_stage()
    base = Settings(data_dir=a.data_dir)
    grid = [(t, w) for t, w in itertools.product(map(float, a.thresholds.split(",")), map(float, a.weights.split(",")))]
    results: dict = {}  # (set, wrong, threshold, weight) -> {question id: mrr}
    sets: dict = {}
    t0 = time.time()
    for name in a.sets.split(","):
        ds, questions, docs, markable, reworded = load_set(name, base, a.squad_paragraphs)
        scratch = a.data_dir / f"corpus-{name}"  # outside the checkout: the dataset's text never enters the project
        if not scratch.is_dir():
            scratch.mkdir(parents=True)
            for doc_id in docs:
                doc = ds.corpus[doc_id]
                (scratch / f"{doc.id}.txt").write_text(f"{doc.title}\n\n{doc.text}\n", encoding="utf-8")
        Ingestor(base, name).ingest_paths([scratch])
        marked, asked = plan(ds, questions, markable, a.marked, reworded)
        counts: dict = {}
        capped = []
        for item in sorted(asked, key=lambda x: _h(x[0].id)):
            key = f"{item[1]}/{item[2]}"
            if counts.get(key, 0) < a.limit:
                counts[key] = counts.get(key, 0) + 1
                capped.append(item)
        store = FeedbackStore(base)
        print(f"{name}: {len(docs)} documents, {len(marked)} marked questions, asked {json.dumps(counts)}, "
              f"{time.time() - t0:.0f}s", flush=True)

        store.delete(name, [m.mark_id for m in store.marks(name)])
        before = pipeline_for(base, 0.9, 0.0)
        results[(name, "before")] = ask_all(before, name, capped, ds)
        shown = {q.id: before.ask(q.text, collection=name, generate=False) for q in marked}
        sets[name] = (ds, marked, capped, shown)
        for wrong in (0.0, a.wrong):
            n_wrong = store_marks(store, name, ds, marked, wrong, shown)
            print(f"{name}: marks stored ({n_wrong} of {len(marked)} questions' on a wrong chunk), "
                  f"{time.time() - t0:.0f}s", flush=True)
            dev = [x for x in capped if x[2] == "dev"]
            for threshold, weight in grid:
                results[(name, wrong, threshold, weight)] = ask_all(pipeline_for(base, threshold, weight), name, dev,
                                                                    ds)
            print(f"{name}: dev grid at {wrong:.0%} wrong marks done ({MOVED[0]} of {len(dev) * len(grid)} answers "
                  f"moved by marks), {time.time() - t0:.0f}s", flush=True)
            MOVED[0] = 0

    def mean(scores: dict, items, group: str, split: str, any_of: bool = False) -> float:
        values = [scores[q.id] for q, g, s in items if (any_of or g == group) and s == split and q.id in scores]
        return statistics.fmean(values) if values else float("nan")

    print("\ndev grid: MRR@5 after - before (re-worded and shared / unrelated), per set and wrong-mark share")
    best, best_key = None, None
    for threshold, weight in grid:
        cells, gains, fine = [], [], True
        for name, (ds, marked, capped, _) in sets.items():
            for wrong in (0.0, a.wrong):
                got, was = results[(name, wrong, threshold, weight)], results[(name, "before")]
                helped = [x for x in capped if x[1] in ("re-worded", "shared")]  # the questions marks may help
                shared = mean(got, helped, "shared", "dev", any_of=True) - mean(was, helped, "shared", "dev", any_of=True)
                unrelated = mean(got, capped, "unrelated", "dev") - mean(was, capped, "unrelated", "dev")
                cells.append(f"{name}@{wrong:.0%} {shared:+.3f}/{unrelated:+.3f}")
                fine &= unrelated >= -a.tolerance
                if wrong == 0.0:
                    gains.append(shared)
        score = min(gains) if fine else float("-inf")
        print(f"  threshold {threshold:.2f} weight {weight:.2f}: " + "  ".join(cells), flush=True)
        if best is None or score > best:
            best, best_key = score, (threshold, weight)
    threshold, weight = best_key
    print(f"\nchosen on dev: threshold {threshold:.2f}, weight {weight:.2f} (worst set's shared gain {best:+.3f})")

    print("\ntest split, MRR@5 (questions): before -> after, right marks | with wrong marks")
    for name, (ds, marked, capped, shown) in sets.items():
        test = [x for x in capped if x[2] == "test"]
        store, row = FeedbackStore(base), {}
        for wrong in (0.0, a.wrong):
            store_marks(store, name, ds, marked, wrong, shown)
            row[wrong] = ask_all(pipeline_for(base, threshold, weight), name, test, ds)
        for group in ("re-worded", "shared", "unrelated"):
            n = sum(1 for _, g, s in capped if g == group and s == "test")
            if n:
                was = mean(results[(name, "before")], capped, group, "test")
                print(f"  {name} {group} ({n}): {was:.3f} -> {mean(row[0.0], capped, group, 'test'):.3f} | "
                      f"{mean(row[a.wrong], capped, group, 'test'):.3f} ({a.wrong:.0%} of marks wrong)", flush=True)
    print(f"total {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
