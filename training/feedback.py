"""From a collection's feedback to training data, a torch base to fine-tune, and old-vs-new scores.

* **Split by question** (:func:`split_questions`): the marked questions sorted by the sha1 of their text, the
  first ``feedback_holdout`` of them held out. A hash, not a random draw, so the same marks always split the
  same way and a question never moves between training and evaluation as marks are added to others.
* **Pairs + hard negatives** (:func:`prepare`): each training question's chunks marked as answering it are its
  positives; its negatives are, first, the chunks marked as not answering it, then the first stage's own
  candidates for it (the app's hybrid retrieval, what the reranker will be handed), minus any chunk marked
  relevant. An unmarked candidate may in fact answer the question: the usual price of mined negatives.
* **What is compared** (:func:`evaluate_cases`): every held-out question's first-stage candidates are fetched
  once here; old and new reranker then reorder the same lists with the pipeline's own rerank step
  (:meth:`rag.pipeline.RagPipeline._rank`: depth, blend and weight of the settings), scored by MRR@5. The
  public dev set is searched the way ``rerank-rag eval`` searches it (its cached index, the same first stage).

Everything that reads the store happens here, in the process that asked for the training; the training
process (:mod:`training.feedback_job`) reads only the files written here, so it never opens an embedded store
that a server holds.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path

from rag.feedback import FeedbackStore
from rag.settings import Settings

K = 5  # MRR@5, as every table of BENCHMARKS.md
NEGATIVES_PER_QUESTION = 20


class NotEnoughFeedback(ValueError):
    """Too few marked questions to train and compare; the message says how many more."""


def question_hash(question: str) -> str:
    return hashlib.sha1(question.encode()).hexdigest()


def split_questions(questions: list[str], holdout: float,
                    trained_before: set[str] = frozenset()) -> tuple[list[str], list[str]]:
    """(training, held out): sorted by the sha1 of the question, the first ``holdout`` share held out (at least 1).

    ``trained_before`` (sha1s): questions the reranker in use was itself fine-tuned on (a second round of
    feedback training) stay on the training side: held out, they would flatter the reranker in use."""
    ordered = sorted(questions, key=question_hash)
    n_held = min(len(ordered) - 1, max(1, math.ceil(len(ordered) * holdout)))
    may_hold = [q for q in ordered if question_hash(q) not in trained_before]
    held = may_hold[:n_held]
    return [q for q in ordered if q not in set(held)], held


def check_enough(settings: Settings, collection: str) -> dict[str, dict[str, list[str]]]:
    """The trainable questions of ``collection``; NotEnoughFeedback when fewer than feedback_min_questions."""
    questions = FeedbackStore(settings).trainable_questions(collection)
    need = settings.feedback_min_questions
    if len(questions) < need:
        raise NotEnoughFeedback(
            f"{len(questions)} question(s) of '{collection}' have a chunk marked as answering them; training needs "
            f"{need} (RAG_FEEDBACK_MIN_QUESTIONS): a quarter is held out to compare the old and the new reranker, "
            "and fewer held-out questions would make that comparison noise")
    return questions


TRAINED_ON = "feedback_questions.json"  # in a fine-tune's folder: the sha1s of the questions it trained on


def trained_before(settings: Settings, collection: str) -> set[str]:
    """The questions the collection's reranker was fine-tuned on, when it is a feedback fine-tune."""
    from rag.feedback import collection_reranker

    chosen = collection_reranker(settings, collection)
    record = Path(chosen) / TRAINED_ON if chosen else None
    return set(json.loads(record.read_text(encoding="utf-8"))) if record and record.is_file() else set()


def dev_set_dir(settings: Settings) -> Path | None:
    if not settings.feedback_dev_set.strip():
        return None
    path = Path(settings.feedback_dev_set).expanduser()
    return path if path.is_absolute() else Path(settings.datasets_dir) / path


def _candidates(found, key: Callable) -> list[dict]:
    return [{"id": c.chunk.chunk_id, "key": key(c.chunk), "text": c.chunk.read_text, "score": c.score}
            for c in found.candidates]


def prepare(settings: Settings, collection: str, job_dir: Path, log: Callable[[str], None] = print) -> dict:
    """Write ``train.json`` (the mined-file format ``reranker train --mined`` reads) and ``eval.json`` (the
    held-out questions and the dev set, each with its first-stage candidates) into ``job_dir``."""
    from rag.pipeline import RagPipeline
    from rag.retrieve import retrieve
    from rag.store import KnowledgeBase
    from training.data import SourceInfo, TrainQuery
    from training.mine import save_mined

    questions = check_enough(settings, collection)
    train_qs, held_qs = split_questions(list(questions), settings.feedback_holdout, trained_before(settings, collection))
    store = FeedbackStore(settings)
    marked = [c for m in questions.values() for c in m["relevant"] + m["irrelevant"]]
    texts = store.chunk_texts(collection, marked)
    pipeline = RagPipeline(settings)
    kb = KnowledgeBase(settings, collection)
    embedder = pipeline.embedder_for(kb)
    depth = max(settings.top_k, NEGATIVES_PER_QUESTION + 8)
    log(f"{len(questions)} marked questions: {len(train_qs)} to train on, {len(held_qs)} held out; searching each")
    train: list[TrainQuery] = []
    for question in train_qs:
        m = questions[question]
        positives = [texts[c] for c in m["relevant"] if c in texts]
        if not positives:  # its documents were deleted since
            continue
        found = retrieve(question, kb, embedder, settings, mode=settings.retrieval, top_k=depth)
        mined = [c.chunk.chunk_id for c in found.candidates if c.chunk.chunk_id not in m["relevant"]]
        negatives = [texts[c] for c in m["irrelevant"] if c in texts]
        negatives += [c.chunk.read_text for c in found.candidates if c.chunk.chunk_id in mined]  # as reranked
        train.append(TrainQuery(collection, question, positives, list(dict.fromkeys(negatives))[:NEGATIVES_PER_QUESTION]))
    held = []
    for question in held_qs:
        found = retrieve(question, kb, embedder, settings, mode=settings.retrieval, top_k=settings.top_k)
        held.append({"question": question, "relevant": questions[question]["relevant"],
                     "candidates": _candidates(found, key=lambda chunk: chunk.chunk_id)})
    info = SourceInfo(name=f"feedback:{collection}", path=f"collection {collection}", kind="feedback",
                      docs=len(kb.documents()), queries_available=len(questions), queries_used=len(train),
                      held_out_queries=len(held))
    first_stage = {"retrieval": settings.retrieval, "fusion": settings.fusion, "embed_model": kb.embed_model,
                   "first_stage_k": settings.first_stage_k, "top": depth}
    save_mined(job_dir / "train.json", train, [info], first_stage)
    (job_dir / TRAINED_ON).write_text(json.dumps(sorted(map(question_hash, train_qs)) + sorted(trained_before(
        settings, collection))), encoding="utf-8")  # travels into the fine-tune's folder
    dev = _dev_cases(settings, log)
    payload = {"collection": collection, "split": {"train": len(train), "held_out": len(held),
                                                    "rule": f"sha1 of the question, first {settings.feedback_holdout:.0%} held out"},
               "feedback": held, "dev": dev}
    (job_dir / "eval.json").write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
    return payload["split"]


def _dev_cases(settings: Settings, log: Callable[[str], None]) -> dict | None:
    """The dev set's first ``feedback_dev_queries`` judged questions with their first-stage candidates."""
    folder = dev_set_dir(settings)
    if folder is None:
        return None
    from evaluation.datasets import load_dataset
    from evaluation.index import dataset_label, index_corpus
    from rag.pipeline import RagPipeline
    from rag.retrieve import retrieve

    ds = load_dataset(folder, name=dataset_label(folder))
    index = index_corpus(settings, folder, ds, progress=log)
    pipeline = RagPipeline(settings)
    kb = pipeline.knowledge_base(index.collection)
    embedder = pipeline.embedder_for(kb)
    cases = []
    for q in ds.queries_with_qrels(settings.feedback_dev_queries):
        found = retrieve(q.text, kb, embedder, settings, mode=settings.retrieval, top_k=settings.top_k)
        cases.append({"question": q.text, "relevant": sorted(ds.relevant(q.id)),
                      "candidates": _candidates(found, key=lambda chunk: chunk.source)})
    log(f"dev set {ds.name}: {len(cases)} questions")
    return {"name": ds.name, "cases": cases}


# ---- the base to fine-tune -----------------------------------------------------------------------------
def training_base(reranker: str, work_dir: Path) -> tuple[str, str, bool]:
    """(torch folder to fine-tune, how it was had, whether its head is trained) for the reranker in use.

    The one place that decides what "a copy of the current reranker" is: its own torch weights when it has
    them (an earlier feedback fine-tune), else a torch copy of its int8 ONNX file (the default ships only as
    that), else, for no reranker at all, the packaged all-MiniLM-L6-v2 with a new head."""
    from rag.embedders.models import has_torch_weights, packaged_minilm_path
    from rag.rerank import onnx_file, resolve_reranker
    from rag.settings import reranker_off

    if reranker_off(reranker):
        return packaged_minilm_path(), "all-MiniLM-L6-v2 with a new head (no reranker was in use)", False
    path, _ = resolve_reranker(reranker)
    if has_torch_weights(path):
        return path, f"{reranker}: its torch weights", True
    if onnx_file(path):
        from training.dequantize import torch_folder_from_onnx

        out = torch_folder_from_onnx(path, work_dir / "base")
        return str(out), f"{reranker}: its int8 ONNX weights, dequantized to fp32", True
    raise ValueError(f"the reranker '{reranker}' has neither torch weights nor an ONNX file to start from")


# ---- old vs new -------------------------------------------------------------------------------------
def evaluate_cases(cases: list[dict], reranker, settings: Settings, k: int = K) -> dict:
    """MRR@k and hit@k of the final order the pipeline's rerank step gives these candidates (``reranker``
    None: the first stage's order). A document's several chunks count where its first one ranks."""
    from rag.pipeline import RagPipeline
    from rag.retrieve import Candidate
    from rag.store import StoredChunk

    rr, hits = [], 0
    for case in cases:
        found = [Candidate(StoredChunk(c["id"], "", c["key"], None, c["text"], c["score"]), n, c["score"])
                 for n, c in enumerate(case["candidates"], 1)]
        ranked = RagPipeline._rank(case["question"], found, reranker, settings.rerank_weight,
                                   depth=settings.rerank_depth, blend_kind=settings.rerank_blend)
        order = list(dict.fromkeys(h.source for h in sorted(ranked, key=lambda h: h.final_rank)))[:k]
        relevant = set(case["relevant"])
        first = next((n for n, key in enumerate(order, 1) if key in relevant), None)
        rr.append(1.0 / first if first else 0.0)
        hits += first is not None
    n = max(1, len(cases))
    return {"questions": len(cases), f"mrr@{k}": round(sum(rr) / n, 4), f"hit@{k}": round(hits / n, 4)}


def compare(eval_file: Path, old, new, settings: Settings, log: Callable[[str], None] = print) -> dict:
    """Old and new reranker (and the first stage alone) on the held-out feedback questions and the dev set."""
    payload = json.loads(Path(eval_file).read_text(encoding="utf-8"))
    sets = [("held-out feedback", payload["feedback"])]
    if payload.get("dev"):
        sets.append((f"dev set {payload['dev']['name']}", payload["dev"]["cases"]))
    rows = []
    for name, cases in sets:
        row = {"set": name, "questions": len(cases)}
        for label, model in (("first stage", None), ("current", old), ("fine-tuned", new)):
            log(f"scoring {name} with the {label} reranker")
            row[label] = evaluate_cases(cases, model, settings)[f"mrr@{K}"]
        rows.append(row)
    better = rows[0]["fine-tuned"] > rows[0]["current"]
    kept = len(rows) < 2 or rows[1]["fine-tuned"] >= rows[1]["current"] - 0.01
    verdict = ("better on the held-out questions" if better else "not better on the held-out questions") + (
        "" if len(rows) < 2 else ("; the dev set holds" if kept else "; it lost ground on the dev set"))
    return {"metric": f"MRR@{K}", "rows": rows, "split": payload["split"], "better": better and kept,
            "verdict": verdict}
