"""Running an evaluation: every question asked through the product's read path, its top-n scored.

Everything runs through :meth:`rag.pipeline.RagPipeline.ask` with ``generate=False`` (as llama-index's
RetrieverEvaluator sees only the retriever), so the numbers and latencies are the ones a user of
``rerank-rag ask`` gets.

* Public sets in BEIR format (``corpus.jsonl``, ``queries.jsonl``, ``qrels.tsv``): the corpus is indexed by
  :mod:`evaluation.index`.
* A user's own collection with a questions file (``{"question", "expected_source" | "expected_chunk_id"}``
  per line), optionally written first by :func:`evaluation.questions.generate_questions` with the LLM.

Metrics: hit rate and MRR as LlamaIndex's ``RetrieverEvaluator`` defines them, nDCG@10 graded by the qrels
score (:mod:`evaluation.metrics`). With ``answers=True`` (``--answers``) the questions are asked with
``generate=True`` and the answers scored against the gold answers (``answers.jsonl``): the extractive answer
always, the LLM's too when one is configured (see :func:`_answer_scores`).

>>> report = evaluate_dataset(Settings(), "../shared/datasets/xquad/en", queries=300)
>>> [(run.name, round(run.mrr, 3)) for run in report.runs]
[('dense', 0.7...), ('rerank:rerank-minilm-l6', 0.8...)]
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from evaluation.datasets import load_dataset
from evaluation.index import EvalError, Progress, dataset_label, index_corpus
from evaluation.metrics import (
    answer_contains,
    answer_lead,
    answer_word_recall,
    first_occurrences,
    hit_rate,
    mrr,
    ndcg_at_k,
    percentiles,
    warning_rates,
)
from evaluation.questions import load_questions
from evaluation.report import EvalReport, IndexInfo, RunResult
from rag import catalog
from rag.settings import NO_RERANK, RETRIEVAL_MODES, Settings
from rag.types import AskResult

__all__ = ["EvalError", "EvalReport", "default_rerankers", "evaluate_dataset", "evaluate_questions"]


class _Case(BaseModel):
    question: str
    expected: list[str]
    relevance: dict[str, float] = Field(default_factory=dict)
    answers: list[str] = Field(default_factory=list)  # gold answers, when the set has them


def run_name(first_stage: str, reranker: str | None) -> str:
    """``dense``, ``bm25``, ``hybrid``; reranked: ``rerank:<model>`` on dense (the historic name), else
    ``<first stage>+rerank:<model>``."""
    if reranker is None:
        return first_stage
    return f"rerank:{reranker}" if first_stage == "dense" else f"{first_stage}+rerank:{reranker}"


class RunProgress:
    """The progress line of an evaluation: "run i of n (name), question j of m, about T left", at most one
    every ``EVERY_S`` (and at each run's end); the estimate is the pace so far times the questions left."""

    EVERY_S = 2.0

    def __init__(self, say: Progress | None, runs: int) -> None:
        self.say, self.runs, self.run, self.done, self.total = say, runs, 0, 0, 0
        self.started = self.last = 0.0

    def start_run(self, name: str, questions: int) -> None:
        self.run, self.name, self.questions = self.run + 1, name, questions
        self.total = self.total or self.runs * questions
        self.started = self.started or time.perf_counter()

    def question(self, j: int) -> None:
        self.done += 1
        now = time.perf_counter()
        if self.say is None or (now - self.last < self.EVERY_S and j < self.questions):
            return
        self.last = now
        left = (now - self.started) / self.done * max(self.total - self.done, 0)
        estimate = f", about {_duration(left)} left" if self.done < self.total else ""
        self.say(f"run {self.run} of {self.runs} ({self.name}), question {j} of {self.questions}{estimate}")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 60 else f"{seconds // 60:.0f} min {seconds % 60:.0f} s"


def _ask_all(settings: Settings, collection: str, cases: Sequence[_Case], *, first_stage: str,
             reranker: str | None, top_k: int, top_n: int, progress: RunProgress,
             answers: bool = False) -> list[AskResult]:
    """Every question through the product pipeline: no answer, or with ``answers`` the product's answer (the
    LLM's when one is configured, else the extractive one)."""
    from rag.pipeline import RagPipeline

    pipeline = RagPipeline(settings.model_copy(update={"reranker": reranker or NO_RERANK}))
    ask = functools.partial(pipeline.ask, collection=collection, top_k=top_k, top_n=top_n, retrieval=first_stage,
                            rerank=reranker is not None, generate=answers)
    progress.start_run(run_name(first_stage, reranker), len(cases))
    ask(cases[0].question)  # untimed: loads the models, warms ONNX/torch kernels, Chroma's and BM25's indexes
    results = []
    for n, case in enumerate(cases, 1):
        results.append(ask(case.question))
        progress.question(n)
    return results


STAGES = ("embed", "search", "bm25", "fuse", "rerank")


def _extractive(settings: Settings, question: str, chunks: list, reranker: str | None) -> tuple[str, float]:
    """(the extractive answer from ``chunks``, ms): what the product answers with no LLM, the sentences
    chosen with ``reranker`` (None: the embedder)."""
    import time

    from rag.pipeline import RagPipeline

    pipeline = RagPipeline(settings.model_copy(update={"reranker": reranker or NO_RERANK}))
    started = time.perf_counter()
    answer = pipeline.extractive(question, chunks, rerank=reranker is not None).answer
    return answer, (time.perf_counter() - started) * 1000


def _llm_answer(settings: Settings, question: str, chunks: list) -> str:
    """The LLM's answer from ``chunks``; a failure is an empty answer (it answered nothing)."""
    from rag.answer import LlmAnswerer, LlmError

    try:
        return LlmAnswerer(settings).answer(question, chunks)
    except LlmError:
        return ""


def _answer_scores(settings: Settings, results: Sequence[AskResult], cases: Sequence[_Case], *,
                   reranker: str | None, top_n: int, key: Callable[[object], str]) -> dict:
    """The answer fields of a run (see :class:`RunResult`): the extractive answer always, the LLM's when one
    is configured. A reranked run reads the answer the pipeline gave (and makes the other kind from the same
    chunks); the first stage alone answers from its own top-n, without the reranker."""
    with_llm = settings.llm_configured
    rows = []  # (gold, hit, extractive, llm)
    answer_ms: list[float] = []
    for result, case in zip(results, cases, strict=True):
        if not case.answers:
            continue
        if reranker:
            chunks = result.chunks
        else:
            chunks = sorted(result.candidates, key=lambda c: c.retrieval_rank)[:top_n]
        if reranker and result.answer_mode == "extractive" and result.error is None:
            extractive, ms = result.answer, result.timings_ms.generate
        else:
            extractive, ms = _extractive(settings, result.question, chunks, reranker)
        answer_ms.append(ms)
        llm = None
        if with_llm:
            llm = (result.answer if result.answer_mode == "llm" else "") if reranker else \
                _llm_answer(settings, result.question, chunks)
        hit = bool(set(case.expected) & {key(c) for c in chunks})
        rows.append((case.answers, hit, extractive, llm))
    if not rows:
        return {}

    def share(values: list[bool]) -> float | None:
        return round(sum(values) / len(values), 4) if values else None

    def scores(prefix: str, texts: list[str]) -> dict:
        contains = [answer_contains(gold, text) for (gold, *_), text in zip(rows, texts)]
        hits = [i for i, row in enumerate(rows) if row[1]]
        return {f"{prefix}answer_contains": share(contains),
                f"{prefix}answer_contains_given_hit": share([contains[i] for i in hits]),
                f"{prefix}lead_contains_given_hit": share([answer_contains(rows[i][0], answer_lead(texts[i]))
                                                           for i in hits]),
                f"{prefix}answer_chars": round(sum(len(t) for t in texts) / len(texts), 1),
                f"{prefix}answer_word_recall_given_hit": round(sum(answer_word_recall(rows[i][0], texts[i])
                                                                   for i in hits) / len(hits), 4) if hits else None}

    out = {"answer_queries": len(rows), "answer_hit_queries": sum(1 for row in rows if row[1]),
           "answer_ms": percentiles(answer_ms), **scores("", [row[2] for row in rows])}
    if with_llm:
        out |= scores("llm_", [row[3] for row in rows])
    return out


def _score(results: Sequence[AskResult], cases: Sequence[_Case], *, first_stage: str, reranker: str | None,
           top_n: int, key: Callable[[object], str], ndcg: bool, answers: bool = False,
           settings: Settings | None = None) -> RunResult:
    """Hit rate, MRR and recall of one run. With ``reranker=None`` the results are read in first-stage order
    (the rerank, if it ran, left out of the order and of the latency: the first stage alone)."""
    hits, mrrs, ndcgs, recalls = [], [], [], []
    stages: dict[str, list[float]] = {stage: [] for stage in (*STAGES, "total")}
    for result, case in zip(results, cases, strict=True):
        ordered = sorted(result.candidates, key=lambda c: c.final_rank if reranker else c.retrieval_rank)
        ranked = first_occurrences(key(c) for c in ordered)
        hits.append(hit_rate(case.expected, ranked, top_n))
        mrrs.append(mrr(case.expected, ranked, top_n))
        recalls.append(len(set(case.expected) & set(ranked)) / len(set(case.expected)))
        if ndcg:
            ndcgs.append(ndcg_at_k(case.relevance or {e: 1.0 for e in case.expected}, ranked, 10))
        t = result.timings_ms
        for stage in STAGES:
            stages[stage].append(getattr(t, stage) if reranker or stage != "rerank" else 0.0)
        stages["total"].append(t.total - t.generate - (0.0 if reranker else t.rerank))
    count = len(cases)
    ran = {s for s in STAGES if any(stages[s])} | ({"rerank"} if reranker else set())
    return RunResult(
        name=run_name(first_stage, reranker),
        first_stage=first_stage,
        embedder=results[0].embedder,
        reranker=reranker,
        queries=count,
        hit_rate=round(sum(hits) / count, 4),
        mrr=round(sum(mrrs) / count, 4),
        recall_at_k=round(sum(recalls) / count, 4),
        ndcg_at_10=round(sum(ndcgs) / count, 4) if ndcg else None,
        latency_ms=percentiles(stages["total"]),
        stages_ms={s: percentiles(stages[s]) for s in STAGES if s in ran},
        **(_answer_scores(settings, results, cases, reranker=reranker, top_n=top_n, key=key)
           if answers and settings is not None else {}),
    )


def _runs(settings: Settings, collection: str, cases: Sequence[_Case], *, first_stages: Sequence[str],
          rerankers: Sequence[str], top_k: int, top_n: int, key: Callable[[object], str], ndcg: bool,
          progress: RunProgress, answers: bool = False, unanswerable: Sequence[_Case] = ()) -> list[RunResult]:
    """For each first stage: its run alone, then one run per reranker. The first stage alone is read from
    the first reranker's results (same candidates, ordered by first-stage rank, latency without the rerank)
    rather than asked again: it halves the work and compares the very same candidate lists. ``unanswerable``
    questions are asked by each run that asked with its own settings, for its warning rates."""
    runs = []
    for first_stage in first_stages:
        common = {"first_stage": first_stage, "top_n": top_n, "key": key, "ndcg": ndcg, "answers": answers,
                  "settings": settings}
        reranked = {r: _ask_all(settings, collection, cases, first_stage=first_stage, reranker=r, top_k=top_k,
                                top_n=top_n, progress=progress, answers=answers) for r in rerankers}
        alone = (next(iter(reranked.values())) if reranked else
                 _ask_all(settings, collection, cases, first_stage=first_stage, reranker=None, top_k=top_k,
                          top_n=top_n, progress=progress, answers=answers))
        scored = [_score(alone, cases, reranker=None, **common)]
        scored += [_score(results, cases, reranker=r, **common) for r, results in reranked.items()]
        for run, results in zip(scored, [None if reranked else alone, *reranked.values()], strict=True):
            if unanswerable and results is not None:
                unanswered = _ask_all(settings, collection, unanswerable, first_stage=first_stage,
                                      reranker=run.reranker, top_k=top_k, top_n=top_n, progress=progress,
                                      answers=answers)
                run.unanswerable_queries = len(unanswerable)
                run.warned_unanswerable, run.warned_answerable = warning_rates(results, unanswered)
        runs += scored
    default_reranker = settings.reranker if settings.rerank_enabled else None
    for run in runs:
        run.default = (run.first_stage == settings.retrieval and run.reranker == default_reranker
                       and run.embedder == settings.embed_model)
    return runs


def default_rerankers(settings: Settings) -> list[str]:
    """The configured reranker; when that is 'none', the shipped default (an eval compares, so it needs one)."""
    if settings.rerank_enabled:
        return [settings.reranker]
    return [catalog.DEFAULT_RERANKER]


def _check_first_stages(first_stages: Sequence[str] | None) -> list[str]:
    chosen = list(first_stages or RETRIEVAL_MODES)
    unknown = [f for f in chosen if f not in RETRIEVAL_MODES]
    if unknown:
        raise EvalError(f"unknown first stage {', '.join(unknown)}: use {', '.join(RETRIEVAL_MODES)}")
    return chosen


def _check_rerankers(rerankers: Sequence[str], settings: Settings) -> None:
    """Load each reranker once up front so a missing model fails before minutes of work, with its reason."""
    from rag.rerank import load_reranker

    for name in rerankers:
        load_reranker(name, settings.device, settings.rerank_max_length)


def evaluate_dataset(
    settings: Settings,
    dataset_dir: str | Path,
    *,
    queries: int | None = None,
    relevant_docs: str | None = None,
    rerankers: Sequence[str] | None = None,
    embedders: Sequence[str] | None = None,
    first_stages: Sequence[str] | None = None,
    top_k: int | None = None,
    top_n: int | None = None,
    chunk: bool = False,
    ndcg: bool = False,
    rebuild: bool = False,
    answers: bool = False,
    progress: Progress | None = None,
) -> EvalReport:
    """Hit rate / MRR at top-n on a BEIR-format folder, for each embedder x first stage x (no) reranker.

    ``rerankers``: names (default: the configured one, see :func:`default_rerankers`); ``[]`` = first stages only.
    ``first_stages``: dense, bm25, hybrid (default: all three).
    ``queries``: the first N queries, in file order, that have qrels.
    ``relevant_docs``: only queries whose relevant doc ids all match this regex (a held-out split).
    ``answers``: also score each run's answers against the set's ``answers.jsonl`` (see :class:`RunResult`).
    """
    dataset_dir = Path(dataset_dir)
    dataset = load_dataset(dataset_dir, name=dataset_label(dataset_dir))
    try:
        selected = dataset.queries_with_qrels(queries, relevant_docs=relevant_docs)
    except re.error as exc:
        raise EvalError(f"--relevant-docs {relevant_docs!r} is not a valid regex: {exc}") from exc
    unanswerable = [_Case(question=q.text, expected=[]) for q in dataset.unanswerable_queries(queries)]
    blank = [q for q in selected if not q.text.strip()]  # cmrc2018 has two: nothing to ask
    selected = [q for q in selected if q.text.strip()]
    if not selected:
        raise EvalError(f"no query in {dataset_dir} has text and a relevant document in qrels.tsv"
                        + (f" matching {relevant_docs!r}" if relevant_docs else ""))
    if answers and not any(dataset.answers.get(q.id) for q in selected):
        raise EvalError(f"{dataset_dir} has no gold answers for these queries (answers.jsonl): --answers needs them")
    rerankers = list(default_rerankers(settings) if rerankers is None else rerankers)
    embedders = list(embedders or [settings.embed_model])
    first_stages = _check_first_stages(first_stages)
    top_k = top_k or settings.top_k
    top_n = min(top_n or settings.top_n, top_k)
    _check_rerankers(rerankers, settings)
    cases = [
        _Case(question=q.text, expected=sorted(dataset.relevant(q.id)),
              relevance={d: s for d, s in dataset.qrels[q.id].items() if s > 0},
              answers=dataset.answers.get(q.id, []) if answers else [])
        for q in selected
    ]
    runs: list[RunResult] = []
    indexes: list[IndexInfo] = []
    counter = RunProgress(progress, len(embedders) * len(first_stages) * max(len(rerankers), 1))
    for embedder in embedders:
        s = settings.model_copy(update={"embed_model": embedder})
        info = index_corpus(s, dataset_dir, dataset, chunk=chunk, rebuild=rebuild, progress=progress)
        indexes.append(info)
        if progress:
            progress(f"index {info.collection}: {info.nodes} nodes ({'cached' if info.cached else 'built'})")
        runs += _runs(s, info.collection, cases, first_stages=first_stages, rerankers=rerankers, top_k=top_k,
                      top_n=top_n, key=lambda c: c.source, ndcg=ndcg, progress=counter, answers=answers,
                      unanswerable=unanswerable)
    return EvalReport(dataset=dataset.name, queries=len(cases), relevant_docs=relevant_docs, skipped_blank=len(blank),
                      rerank_weight=settings.rerank_weight, top_k=top_k, top_n=top_n,
                      embedder=embedders[0], embedders=embedders, rerankers=rerankers, chunked=chunk, runs=runs,
                      indexes=indexes)


def _as_list(value) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def evaluate_questions(
    settings: Settings,
    questions_file: str | Path,
    *,
    collection: str | None = None,
    rerankers: Sequence[str] | None = None,
    first_stages: Sequence[str] | None = None,
    top_k: int | None = None,
    top_n: int | None = None,
    ndcg: bool = False,
    limit: int | None = None,
    answers: bool = False,
    progress: Progress | None = None,
) -> EvalReport:
    """Hit rate / MRR on the user's own collection from a questions file.

    A question with ``expected_chunk_id`` is scored on chunk ids; one with ``expected_source`` on the
    documents' source names (a document ranks where its first chunk ranks). With ``answers``, each row's
    ``answers`` (a list) or ``answer`` (a text) is its gold answer and the answers are scored.
    """
    from rag.store import KnowledgeBase

    collection = collection or settings.collection
    kb = KnowledgeBase(settings, collection)
    if kb.count() == 0:
        raise EvalError(f"collection '{collection}' is empty: ingest documents first")
    rows = load_questions(questions_file)[:limit]
    unanswerable = [_Case(question=str(r["question"]), expected=[]) for r in rows if r.get("answerable") is False]
    rows = [r for r in rows if r.get("answerable") is not False]
    if not rows:
        raise EvalError("every question is marked unanswerable: give some an 'expected_source' to score")
    by_chunk = all(row.get("expected_chunk_id") for row in rows)
    field = "expected_chunk_id" if by_chunk else "expected_source"
    if not by_chunk and not all(row.get("expected_source") for row in rows):
        raise EvalError("give every question the same kind of label: all 'expected_source' or all 'expected_chunk_id'")
    cases = [_Case(question=str(r["question"]), expected=_as_list(r[field]),
                   answers=_as_list(r.get("answers", r.get("answer"))) if answers else []) for r in rows]
    if answers and not any(case.answers for case in cases):
        raise EvalError("--answers needs gold answers: give questions an 'answers' list or an 'answer' text")
    rerankers = list(default_rerankers(settings) if rerankers is None else rerankers)
    top_k = top_k or settings.top_k
    top_n = min(top_n or settings.top_n, top_k)
    _check_rerankers(rerankers, settings)
    key = (lambda c: c.chunk_id) if by_chunk else (lambda c: c.source)
    first_stages = _check_first_stages(first_stages)
    counter = RunProgress(progress, len(first_stages) * max(len(rerankers), 1))
    runs = _runs(settings, collection, cases, first_stages=first_stages, rerankers=rerankers,
                 top_k=top_k, top_n=top_n, key=key, ndcg=ndcg, progress=counter, answers=answers,
                 unanswerable=unanswerable)
    return EvalReport(dataset=f"collection:{collection} ({Path(questions_file).name}, by {field[9:]})",
                      rerank_weight=settings.rerank_weight,
                      queries=len(cases), top_k=top_k, top_n=top_n, embedder=settings.embed_model,
                      embedders=[settings.embed_model], rerankers=rerankers, runs=runs)
