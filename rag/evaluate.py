"""Retrieval evaluation: hit rate, MRR (and nDCG@10) at top-n, first stage vs reranked, model vs model.

Everything runs through the product's own read path (:meth:`rag.pipeline.RagPipeline.ask` with
``generate=False``), so the numbers and latencies are the ones a user of ``rerank-rag ask`` gets.

* Public sets in BEIR format (``corpus.jsonl``, ``queries.jsonl``, ``qrels.tsv``): the corpus is indexed
  into a throwaway collection under the data dir, one node per corpus document whose id is kept so qrels
  match (``title + "\\n" + text`` when titled); ``chunk=True`` splits long documents like ingest does and
  maps chunk hits back to their document (a document ranks where its first chunk ranks). The index is
  cached: its collection name is derived from (dataset path, corpus sha256, embedder, chunking), so a
  second run over the same corpus and embedder re-uses the vectors instead of re-embedding.
* A user's own collection with a questions file (``{"question", "expected_source" | "expected_chunk_id"}``
  per line), optionally written first by :func:`generate_questions` with the configured LLM.

Metrics: hit rate and MRR as LlamaIndex's ``RetrieverEvaluator`` defines them (``HitRate``/``MRR`` from
``llama_index.core.evaluation``, through :mod:`rag.metrics`); nDCG@10 (graded by the qrels score,
log2 discount, ideal = the query's judged documents) is computed here.

>>> report = evaluate_dataset(Settings(), "../shared/datasets/xquad/en", queries=300)
>>> [(run.name, round(run.mrr, 3)) for run in report.runs]
[('dense', 0.7...), ('rerank:rerank-minilm-l6', 0.8...)]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from rag import catalog
from rag.datasets import RetrievalDataset, load_dataset
from rag.metrics import hit_rate, mrr
from rag.settings import Settings

METRIC_SOURCE = "hit rate and MRR: llama_index.core.evaluation HitRate/MRR (RetrieverEvaluator definitions)"
INDEX_RECORD_ID = "eval-corpus"
INDEX_LAYOUT = "v2"  # bump when the node metadata changes, so cached indexes are rebuilt
Progress = Callable[[str], None]


class EvalError(RuntimeError):
    """The evaluation cannot run as asked; the message says why and what to do."""


# ---- results ---------------------------------------------------------------------------------------
class Latency(BaseModel):
    p50: float
    p95: float


class RunResult(BaseModel):
    """One ranking (first stage alone, or reranked by one model) over all queries."""

    name: str = Field(description="'dense' or 'rerank:<model>'.")
    embedder: str
    reranker: str | None = None
    queries: int
    hit_rate: float
    mrr: float
    ndcg_at_10: float | None = None
    latency_ms: Latency = Field(description="Per-query total (embed + search + rerank), no LLM.")
    stages_ms: dict[str, Latency] = Field(default_factory=dict, description="embed, search, rerank.")


class IndexInfo(BaseModel):
    embedder: str
    collection: str
    nodes: int
    cached: bool
    seconds: float


class EvalReport(BaseModel):
    """What ``rerank-rag eval --json`` prints and the UI's Evaluate page shows."""

    dataset: str
    queries: int
    relevant_docs: str | None = Field(None, description="Regex the queries' relevant doc ids matched (a held-out split).")
    skipped_blank: int = Field(0, description="Selected queries left out because their text is empty (it happens in public sets).")
    top_k: int
    top_n: int
    embedder: str = Field(description="The embedder (the first one when several were compared).")
    embedders: list[str]
    rerankers: list[str]
    chunked: bool = False
    rerank_weight: float = Field(1.0, description="Settings' rerank_weight: the rerank score's share of the final order.")
    metrics: str = METRIC_SOURCE
    runs: list[RunResult]
    indexes: list[IndexInfo] = Field(default_factory=list)

    def run(self, name: str, embedder: str | None = None) -> RunResult:
        return next(r for r in self.runs if r.name == name and (embedder is None or r.embedder == embedder))

    def summary(self) -> dict:
        """The documented ``--json`` shape, plus the extra fields."""
        return self.model_dump()

    def table(self) -> str:
        """A Markdown table of the runs."""
        with_ndcg = any(r.ndcg_at_10 is not None for r in self.runs)
        several = len(self.embedders) > 1
        head = (["embedder"] if several else []) + ["run", f"hit@{self.top_n}", f"MRR@{self.top_n}"]
        head += ["nDCG@10"] if with_ndcg else []
        head += ["p50 ms", "p95 ms", "rerank p50 ms"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.runs:
            cells = ([r.embedder] if several else []) + [r.name, f"{r.hit_rate:.3f}", f"{r.mrr:.3f}"]
            cells += [f"{r.ndcg_at_10:.3f}" if r.ndcg_at_10 is not None else "-"] if with_ndcg else []
            rr = r.stages_ms.get("rerank")
            cells += [f"{r.latency_ms.p50:.1f}", f"{r.latency_ms.p95:.1f}", f"{rr.p50:.1f}" if rr and r.reranker else "-"]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def grid(self) -> str:
        """Embedder x reranker MRR@n grid (the LlamaIndex blog's table), when several models were given."""
        cols = ["dense"] + [f"rerank:{r}" for r in self.rerankers]
        lines = [f"| MRR@{self.top_n} / hit@{self.top_n} | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
        for e in self.embedders:
            cells = []
            for c in cols:
                run = next((r for r in self.runs if r.embedder == e and r.name == c), None)
                cells.append(f"{run.mrr:.3f} / {run.hit_rate:.3f}" if run else "-")
            lines.append(f"| {e} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


# ---- metrics -----------------------------------------------------------------------------------------
def first_occurrences(ids: Iterable[str]) -> list[str]:
    """``ids`` without repeats, each where it first occurs (chunk hits -> documents)."""
    seen: set[str] = set()
    out = []
    for i in ids:
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out


def ndcg_at_k(relevance: dict[str, float], ranked_ids: Sequence[str], k: int = 10) -> float:
    """nDCG@k with gain = the judged score, discount 1/log2(rank + 1); 0.0 when nothing is relevant."""
    gains = sorted((g for g in relevance.values() if g > 0), reverse=True)[:k]
    ideal = sum(g / math.log2(rank + 1) for rank, g in enumerate(gains, 1))
    if ideal == 0:
        return 0.0
    dcg = sum(max(relevance.get(i, 0.0), 0.0) / math.log2(rank + 1) for rank, i in enumerate(ranked_ids[:k], 1))
    return dcg / ideal


def percentiles(values: Sequence[float]) -> Latency:
    if not values:
        return Latency(p50=0.0, p95=0.0)
    arr = np.asarray(values, dtype=float)
    return Latency(p50=round(float(np.percentile(arr, 50)), 2), p95=round(float(np.percentile(arr, 95)), 2))


# ---- indexing a BEIR corpus --------------------------------------------------------------------------
def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-_")[:40] or "dataset"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dataset_label(path: Path) -> str:
    """``xquad/en`` for ``../shared/datasets/xquad/en``, ``squad11_dev`` for a top-level set."""
    parent = path.parent.name
    return f"{parent}/{path.name}" if parent and parent != "datasets" and (path.parent / "SOURCE.md").is_file() else path.name


def index_key(dataset_dir: Path, embedder: str, chunk: bool, settings: Settings) -> str:
    """The cache key of a corpus index: (dataset path, corpus sha256, embedder, chunking)."""
    chunking = f"chunk:{settings.chunk_size}/{settings.chunk_overlap}" if chunk else "doc"
    parts = [INDEX_LAYOUT, str(dataset_dir.resolve()), _file_sha256(dataset_dir / "corpus.jsonl"), embedder, chunking]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def index_corpus(
    settings: Settings,
    dataset_dir: str | Path,
    dataset: RetrievalDataset | None = None,
    *,
    chunk: bool = False,
    rebuild: bool = False,
    progress: Progress | None = None,
) -> IndexInfo:
    """Index ``dataset_dir``'s corpus with ``settings.embed_model`` into a cached throwaway collection."""
    from rag.models import load_embedder
    from rag.store import DocumentRecord, KnowledgeBase

    dataset_dir = Path(dataset_dir)
    key = index_key(dataset_dir, settings.embed_model, chunk, settings)
    name = f"eval-{_slug(dataset_label(dataset_dir))}-{key[:16]}"
    started = time.perf_counter()
    embedder = load_embedder(settings.embed_model, settings.device, settings.embed_batch_size)
    kb = KnowledgeBase(settings, name, embed_model=embedder.name)
    committed = kb.document(INDEX_RECORD_ID)
    if committed is not None and committed.content_sha256 == key and not rebuild:
        return IndexInfo(embedder=embedder.name, collection=name, nodes=committed.chunks, cached=True,
                         seconds=round(time.perf_counter() - started, 2))
    kb.drop()
    kb = KnowledgeBase(settings, name, embed_model=embedder.name)
    dataset = dataset or load_dataset(dataset_dir)
    ids: list[str] = []
    texts: list[str] = []
    metadatas: list[dict] = []
    splitter = None
    if chunk:
        from llama_index.core.node_parser import SentenceSplitter

        splitter = SentenceSplitter(chunk_size=min(settings.chunk_size, embedder.max_tokens),
                                    chunk_overlap=settings.chunk_overlap, tokenizer=embedder.tokenize)
    for doc in dataset.corpus.values():
        body = f"{doc.title}\n{doc.text}" if doc.title else doc.text
        pieces = [p for p in splitter.split_text(body) if p.strip()] if splitter else [body]
        for n, piece in enumerate(pieces):
            ids.append(doc.id if not splitter else f"{doc.id}#{n}")
            texts.append(piece)
            # The whole corpus is one committed document of the store (so readers see all of it or
            # none); each node's corpus id rides in ``source``, which qrels are matched against.
            metadatas.append({"doc_id": INDEX_RECORD_ID, "source": doc.id, "content_sha256": key,
                              "chunk_index": n})
    if not texts:
        raise EvalError(f"the corpus of {dataset_dir} is empty")
    vectors = []
    step = 512
    for start in range(0, len(texts), step):
        vectors.append(embedder.embed_documents(texts[start:start + step]))
        if progress:
            progress(f"indexing {dataset_label(dataset_dir)} with {embedder.name}: "
                     f"{min(start + step, len(texts))}/{len(texts)} nodes")
    record = DocumentRecord(doc_id=INDEX_RECORD_ID, source=str(dataset_dir), content_sha256=key, pages=0,
                            chunks=len(texts), ingested_at=datetime.now(UTC).isoformat(timespec="seconds"),
                            size_bytes=sum(len(t.encode()) for t in texts))
    kb.write_document(record, ids, texts, np.concatenate(vectors), metadatas)
    return IndexInfo(embedder=embedder.name, collection=name, nodes=len(texts), cached=False,
                     seconds=round(time.perf_counter() - started, 2))


# ---- running queries ---------------------------------------------------------------------------------
class _Case(BaseModel):
    question: str
    expected: list[str]
    relevance: dict[str, float] = Field(default_factory=dict)


def _run(
    settings: Settings,
    collection: str,
    cases: Sequence[_Case],
    *,
    reranker: str | None,
    top_k: int,
    top_n: int,
    key: Callable[[object], str],
    ndcg: bool,
    progress: Progress | None,
) -> RunResult:
    """Ask every question through the product pipeline and score its top-n."""
    from rag.pipeline import RagPipeline

    run_settings = settings.model_copy(update={"reranker": reranker or "none"})
    pipeline = RagPipeline(run_settings)
    rerank = reranker is not None
    name = f"rerank:{reranker}" if rerank else "dense"
    # One untimed question first: loads the models, warms ONNX/torch kernels and Chroma's index.
    pipeline.ask(cases[0].question, collection=collection, top_k=top_k, top_n=top_n, rerank=rerank, generate=False)
    hits, mrrs, ndcgs = [], [], []
    stages: dict[str, list[float]] = {"embed": [], "search": [], "rerank": [], "total": []}
    for n, case in enumerate(cases, 1):
        result = pipeline.ask(case.question, collection=collection, top_k=top_k, top_n=top_n, rerank=rerank,
                              generate=False)
        ranked = first_occurrences(key(c) for c in result.chunks)
        hits.append(hit_rate(case.expected, ranked, top_n))
        mrrs.append(mrr(case.expected, ranked, top_n))
        if ndcg:
            ordered = sorted(result.candidates, key=lambda c: c.final_rank)
            ndcgs.append(ndcg_at_k(case.relevance or {e: 1.0 for e in case.expected},
                                   first_occurrences(key(c) for c in ordered), 10))
        t = result.timings_ms
        for stage in stages:
            stages[stage].append(getattr(t, stage))
        if progress and (n % 100 == 0 or n == len(cases)):
            progress(f"{name}: {n}/{len(cases)} queries")
    count = len(cases)
    return RunResult(
        name=name,
        embedder=pipeline.embedder.name,
        reranker=reranker,
        queries=count,
        hit_rate=round(sum(hits) / count, 4),
        mrr=round(sum(mrrs) / count, 4),
        ndcg_at_10=round(sum(ndcgs) / count, 4) if ndcg else None,
        latency_ms=percentiles(stages["total"]),
        stages_ms={s: percentiles(v) for s, v in stages.items() if s != "total" and (rerank or s != "rerank")},
    )


def default_rerankers(settings: Settings) -> list[str]:
    """The configured reranker; when that is 'none', the shipped default (an eval compares, so it needs one)."""
    if settings.reranker.strip().lower() != "none":
        return [settings.reranker]
    return [catalog.DEFAULT_RERANKER]


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
    top_k: int | None = None,
    top_n: int | None = None,
    chunk: bool = False,
    ndcg: bool = False,
    rebuild: bool = False,
    progress: Progress | None = None,
) -> EvalReport:
    """Dense vs reranked hit rate / MRR at top-n on a BEIR-format folder, for each embedder x reranker.

    ``rerankers``: names (default: the configured one, see :func:`default_rerankers`); ``[]`` = dense only.
    ``queries``: the first N queries, in file order, that have qrels.
    ``relevant_docs``: only queries whose relevant doc ids all match this regex (a held-out split).
    """
    dataset_dir = Path(dataset_dir)
    dataset = load_dataset(dataset_dir, name=dataset_label(dataset_dir))
    try:
        selected = dataset.queries_with_qrels(queries, relevant_docs=relevant_docs)
    except re.error as exc:
        raise EvalError(f"--relevant-docs {relevant_docs!r} is not a valid regex: {exc}") from exc
    blank = [q for q in selected if not q.text.strip()]  # cmrc2018 has two: nothing to ask
    selected = [q for q in selected if q.text.strip()]
    if not selected:
        raise EvalError(f"no query in {dataset_dir} has text and a relevant document in qrels.tsv"
                        + (f" matching {relevant_docs!r}" if relevant_docs else ""))
    rerankers = list(default_rerankers(settings) if rerankers is None else rerankers)
    embedders = list(embedders or [settings.embed_model])
    top_k = top_k or settings.top_k
    top_n = min(top_n or settings.top_n, top_k)
    _check_rerankers(rerankers, settings)
    cases = [
        _Case(question=q.text, expected=sorted(dataset.relevant(q.id)),
              relevance={d: s for d, s in dataset.qrels[q.id].items() if s > 0})
        for q in selected
    ]
    runs: list[RunResult] = []
    indexes: list[IndexInfo] = []
    for embedder in embedders:
        s = settings.model_copy(update={"embed_model": embedder})
        info = index_corpus(s, dataset_dir, dataset, chunk=chunk, rebuild=rebuild, progress=progress)
        indexes.append(info)
        if progress:
            progress(f"index {info.collection}: {info.nodes} nodes ({'cached' if info.cached else 'built'})")
        for reranker in [None, *rerankers]:
            runs.append(_run(s, info.collection, cases, reranker=reranker, top_k=top_k, top_n=top_n,
                             key=lambda c: c.source, ndcg=ndcg, progress=progress))
    return EvalReport(dataset=dataset.name, queries=len(cases), relevant_docs=relevant_docs, skipped_blank=len(blank),
                      rerank_weight=settings.rerank_weight, top_k=top_k, top_n=top_n,
                      embedder=embedders[0], embedders=embedders, rerankers=rerankers, chunked=chunk, runs=runs,
                      indexes=indexes)


# ---- a user's own collection -------------------------------------------------------------------------
def load_questions(path: str | Path) -> list[dict]:
    """``{"question", "expected_source" | "expected_chunk_id"}`` per line (either may be a list)."""
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"questions file not found: {path}")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise EvalError(f"{path}:{n}: invalid JSON ({error.msg})") from error
        if not isinstance(row, dict) or not str(row.get("question", "")).strip():
            raise EvalError(f"{path}:{n}: needs a 'question'")
        if not (row.get("expected_source") or row.get("expected_chunk_id")):
            raise EvalError(f"{path}:{n}: needs 'expected_source' or 'expected_chunk_id'")
        rows.append(row)
    if not rows:
        raise EvalError(f"{path} holds no questions")
    return rows


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
    top_k: int | None = None,
    top_n: int | None = None,
    ndcg: bool = False,
    limit: int | None = None,
    progress: Progress | None = None,
) -> EvalReport:
    """Hit rate / MRR on the user's own collection from a questions file.

    A question with ``expected_chunk_id`` is scored on chunk ids; one with ``expected_source`` on the
    documents' source names (a document ranks where its first chunk ranks).
    """
    from rag.store import KnowledgeBase

    collection = collection or settings.collection
    kb = KnowledgeBase(settings, collection)
    if kb.count() == 0:
        raise EvalError(f"collection '{collection}' is empty: ingest documents first")
    rows = load_questions(questions_file)[:limit]
    by_chunk = all(row.get("expected_chunk_id") for row in rows)
    field = "expected_chunk_id" if by_chunk else "expected_source"
    if not by_chunk and not all(row.get("expected_source") for row in rows):
        raise EvalError("give every question the same kind of label: all 'expected_source' or all 'expected_chunk_id'")
    cases = [_Case(question=str(r["question"]), expected=_as_list(r[field])) for r in rows]
    rerankers = list(default_rerankers(settings) if rerankers is None else rerankers)
    top_k = top_k or settings.top_k
    top_n = min(top_n or settings.top_n, top_k)
    _check_rerankers(rerankers, settings)
    key = (lambda c: c.chunk_id) if by_chunk else (lambda c: c.source)
    runs = [
        _run(settings, collection, cases, reranker=r, top_k=top_k, top_n=top_n, key=key, ndcg=ndcg, progress=progress)
        for r in [None, *rerankers]
    ]
    return EvalReport(dataset=f"collection:{collection} ({Path(questions_file).name}, by {field[9:]})",
                      rerank_weight=settings.rerank_weight,
                      queries=len(cases), top_k=top_k, top_n=top_n, embedder=settings.embed_model,
                      embedders=[settings.embed_model], rerankers=rerankers, runs=runs)


# The prompt of llama-index's generate_question_context_pairs (DEFAULT_QA_GENERATE_PROMPT_TMPL), which
# llama-index-core 0.14 no longer ships; asked here through the openai client the app already uses.
QA_GENERATE_PROMPT = """\
Context information is below.

---------------------
{context_str}
---------------------

Given the context information and not prior knowledge.
generate only questions based on the below query.

You are a Teacher/ Professor. Your task is to setup {num_questions_per_chunk} questions for an upcoming \
quiz/examination. The questions should be diverse in nature across the document. Restrict the questions to \
the context information provided."
"""


def _sample_chunks(kb, n: int) -> list[tuple[str, str, str]]:
    """``n`` (chunk_id, source, text) spread evenly over the collection, in a reproducible order."""
    got = kb.chunks.get(include=["documents", "metadatas"])
    rows = sorted(zip(got["ids"], got["metadatas"], got["documents"], strict=True), key=lambda r: r[0])
    rows = [r for r in rows if (r[2] or "").strip()]
    if not rows:
        return []
    step = max(len(rows) / max(n, 1), 1.0)
    picked = [rows[int(i * step)] for i in range(min(n, len(rows)))]
    return [(cid, str((meta or {}).get("source", "")), text) for cid, meta, text in picked]


def _parse_questions(text: str) -> list[str]:
    """Questions out of an LLM reply, one per non-empty line, numbering stripped (as llama-index did)."""
    out = []
    for line in text.strip().splitlines():
        line = re.sub(r"^\s*(?:[-*]|\d+[.)]|Q\d*[:.])\s*", "", line).strip()
        if line:
            out.append(line)
    return out


def generate_questions(
    settings: Settings,
    n: int,
    out_path: str | Path,
    *,
    collection: str | None = None,
    progress: Progress | None = None,
) -> Path:
    """Write ``n`` questions (one per sampled chunk) with their ``expected_chunk_id`` and ``expected_source``."""
    from rag.answer import LlmAnswerer
    from rag.store import KnowledgeBase

    if not settings.llm_configured:
        raise EvalError(
            "--generate needs an LLM: set OPENAI_API_KEY (and RAG_LLM_MODEL), or OPENAI_BASE_URL for a local "
            "OpenAI-compatible server (Ollama, vLLM, LM Studio); or write the questions file yourself: one "
            '{"question": ..., "expected_source": ...} per line'
        )
    collection = collection or settings.collection
    kb = KnowledgeBase(settings, collection)
    chunks = _sample_chunks(kb, n)
    if not chunks:
        raise EvalError(f"collection '{collection}' is empty: ingest documents first")
    client = LlmAnswerer(settings)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with out_path.open("w", encoding="utf-8") as fh:
        for i, (chunk_id, source, text) in enumerate(chunks, 1):
            prompt = QA_GENERATE_PROMPT.format(context_str=text, num_questions_per_chunk=1)
            try:
                reply = client.client.chat.completions.create(
                    model=settings.llm_model, messages=[{"role": "user", "content": prompt}],
                    temperature=settings.llm_temperature,
                )
            except Exception as error:  # noqa: BLE001 - openai raises many types; one message for users
                raise EvalError(f"the LLM failed while writing questions ({type(error).__name__}: "
                                f"{str(error).splitlines()[0][:200] if str(error) else ''})") from error
            content = reply.choices[0].message.content if reply.choices else ""
            questions = _parse_questions(content or "")
            if not questions:
                continue
            fh.write(json.dumps({"question": questions[0], "expected_chunk_id": chunk_id,
                                 "expected_source": source}, ensure_ascii=False) + "\n")
            written += 1
            if progress:
                progress(f"questions: {i}/{len(chunks)}")
    if not written:
        raise EvalError("the LLM returned no usable question")
    return out_path


# ---- the report ----------------------------------------------------------------------------------------
def chart(report: EvalReport):
    """An Altair grouped bar chart: hit rate and MRR per run (and embedder)."""
    import altair as alt
    import pandas as pd

    rows = []
    for r in report.runs:
        label = r.name if len(report.embedders) == 1 else f"{r.embedder} | {r.name}"
        rows.append({"run": label, "metric": f"hit@{report.top_n}", "value": r.hit_rate})
        rows.append({"run": label, "metric": f"MRR@{report.top_n}", "value": r.mrr})
        if r.ndcg_at_10 is not None:
            rows.append({"run": label, "metric": "nDCG@10", "value": r.ndcg_at_10})
    frame = pd.DataFrame(rows)
    return (
        alt.Chart(frame, title=f"{report.dataset}: {report.queries} queries, top-{report.top_k} -> top-{report.top_n}")
        .mark_bar()
        .encode(
            x=alt.X("metric:N", title=None),
            y=alt.Y("value:Q", scale=alt.Scale(domain=[0, 1]), title="score"),
            color=alt.Color("run:N"),
            xOffset="run:N",
            tooltip=["run", "metric", alt.Tooltip("value:Q", format=".3f")],
        )
        .properties(width=360, height=260)
    )


def save_chart(report: EvalReport, base: Path) -> Path:
    """``<base>.png`` when vl-convert is installed, otherwise ``<base>.html`` (self-contained Vega-Lite)."""
    figure = chart(report)
    try:
        import vl_convert  # noqa: F401

        path = base.with_name(base.name + ".png")
    except ImportError:
        path = base.with_name(base.name + ".html")
    figure.save(str(path))
    return path


def markdown(report: EvalReport, chart_path: Path | None = None) -> str:
    lines = [
        f"# Retrieval evaluation: {report.dataset}",
        "",
        (
            f"{report.queries} queries"
            f"{f' (those whose relevant documents match `{report.relevant_docs}`)' if report.relevant_docs else ''}"
            f"{f'; {report.skipped_blank} without text left out' if report.skipped_blank else ''}"
            f"; first stage top-{report.top_k} with `{', '.join(report.embedders)}`, scored at top-{report.top_n}"
            f"{' (documents chunked; a document ranks at its first chunk)' if report.chunked else ''}."
            f"{f' Reranked runs order by {report.rerank_weight:g} x rerank + {1 - report.rerank_weight:g} x retrieval score.' if report.rerank_weight < 1 else ''}"
        ),
        f"Metrics: {report.metrics}. Latency: per query, no LLM, on this machine.",
        "",
        report.table(),
        "",
    ]
    if len(report.embedders) > 1 or len(report.rerankers) > 1:
        lines += ["## Model grid", "", report.grid(), ""]
    if chart_path is not None:
        lines += [f"Chart: [{chart_path.name}]({chart_path.name})" if chart_path.suffix == ".html"
                  else f"![chart]({chart_path.name})", ""]
    return "\n".join(lines)


def write_report(report: EvalReport, out: str | Path) -> tuple[Path, Path]:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    chart_path = save_chart(report, out.with_name(out.stem + ".chart"))
    out.write_text(markdown(report, chart_path), encoding="utf-8")
    return out, chart_path


# ---- CLI -------------------------------------------------------------------------------------------
def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def quiet_libraries(args: argparse.Namespace) -> None:
    """No per-model "Loading weights" bars between the progress lines (``--debug`` keeps them)."""
    if getattr(args, "debug", False):
        return
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    rerankers = None if args.rerankers is None else [r for r in args.rerankers if r.lower() != "none"]
    progress = None if args.quiet else _stderr
    quiet_libraries(args)
    if args.dataset:
        if args.questions or args.generate:
            print("error: --dataset evaluates a public set; --questions/--generate evaluate a collection, "
                  "give one or the other", file=sys.stderr)
            return 2
        report = evaluate_dataset(settings, args.dataset, queries=args.queries, relevant_docs=args.relevant_docs,
                                  rerankers=rerankers, embedders=args.embedders, top_k=args.top_k, top_n=args.top_n,
                                  chunk=args.chunk, ndcg=args.ndcg, rebuild=args.rebuild, progress=progress)
    else:
        if args.embedders and len(args.embedders) > 1:
            print("error: a collection was embedded by one embedder; several --embedder need --dataset",
                  file=sys.stderr)
            return 2
        if args.embedders:
            settings = settings.model_copy(update={"embed_model": args.embedders[0]})
        questions = args.questions
        if args.generate:
            questions = questions or str(Path(settings.data_dir) / "eval" / f"{settings.collection}-questions.jsonl")
            generate_questions(settings, args.generate, questions, progress=progress)
            if progress:
                progress(f"wrote {questions}")
        if not questions:
            print("error: give --dataset DIR, or --questions FILE / --generate N for a collection", file=sys.stderr)
            return 2
        report = evaluate_questions(settings, questions, rerankers=rerankers, top_k=args.top_k, top_n=args.top_n,
                                    ndcg=args.ndcg, limit=args.queries, progress=progress)
    if args.out:
        out, chart_path = write_report(report, args.out)
        if progress:
            progress(f"wrote {out} and {chart_path}")
    if args.json:
        print(json.dumps(report.summary(), ensure_ascii=False, indent=2))
    else:
        print(report.table())
        if len(report.embedders) > 1 or len(report.rerankers) > 1:
            print()
            print(report.grid())
    return 0


def register(subparsers, parent) -> None:
    p = subparsers.add_parser(
        "eval", parents=[parent], help="hit rate / MRR at top-n: first stage vs reranked, model vs model",
        description="Evaluate retrieval on a BEIR-format dataset (--dataset) or on a collection (--questions/--generate).",
    )
    p.add_argument("--dataset", metavar="DIR", help="folder with corpus.jsonl, queries.jsonl, qrels.tsv")
    p.add_argument("--queries", type=int, metavar="N", help="first N queries (file order) that have qrels")
    p.add_argument("--relevant-docs", metavar="REGEX",
                   help="only queries whose relevant doc ids all match REGEX, e.g. a held-out split "
                        "('^s(3[89]|4[0-7])_' = SQuAD articles 38-47); the corpus stays whole")
    p.add_argument("--top-k", type=int, help="first-stage candidates (default: settings, 20)")
    p.add_argument("--top-n", type=int, help="cut-off of the metrics and of the rerank (default: settings, 5)")
    p.add_argument("--embedder", dest="embedders", action="append", metavar="E",
                   help="embedder; repeat for a grid (default: settings)")
    p.add_argument("--reranker", dest="rerankers", action="append", metavar="R",
                   help="reranker; repeat for a grid (default: the configured one, else the shipped default)")
    p.add_argument("--chunk", action="store_true", help="split long documents; chunk hits count for their document")
    p.add_argument("--ndcg", action="store_true", help="also report nDCG@10")
    p.add_argument("--rebuild", action="store_true", help="re-embed the corpus even if a cached index exists")
    p.add_argument("--questions", metavar="FILE", help='collection mode: {"question","expected_source"|"expected_chunk_id"} per line')
    p.add_argument("--generate", type=int, metavar="N", help="collection mode: first write N questions with the LLM")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--out", metavar="REPORT.md", help="write a Markdown report and an Altair chart beside it")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=cmd_eval)
