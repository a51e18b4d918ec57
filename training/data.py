"""Training data: datasets filtered to a split, pairs files, and hard negatives mined by the first stage."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from evaluation.datasets import RetrievalDataset, is_beir_folder, load_dataset

from rag.embedders.models import packaged_minilm_path

@dataclass
class TrainQuery:
    source: str
    query: str
    positives: list[str]
    negatives: list[str] = field(default_factory=list)  # hard-negative pool, best first
    # a teacher's logit per passage (training.teacher), parallel to positives / negatives; empty: unlabelled
    positive_scores: list[float] = field(default_factory=list)
    negative_scores: list[float] = field(default_factory=list)


@dataclass
class SourceInfo:
    name: str
    path: str
    kind: str  # "beir" | "jsonl"
    docs: int = 0
    queries_available: int = 0
    queries_used: int = 0
    include: str | None = None
    excluded_overlap_docs: int = 0
    held_out_queries: int = 0  # judged queries kept out (training.mine.held_out)


def normalise_text(text: str) -> str:
    return " ".join(text.split())


def filter_dataset(
    ds: RetrievalDataset, include: str | None = None, exclude_texts: set[str] | None = None
) -> tuple[RetrievalDataset, int]:
    """Keep documents whose id matches ``include`` and whose text is not in ``exclude_texts``;
    keep queries whose relevant documents all survived. Returns (dataset, n excluded by overlap)."""
    pattern = re.compile(include) if include else None
    corpus = {}
    dropped = 0
    for did, doc in ds.corpus.items():
        if pattern and not pattern.search(did):
            continue
        if exclude_texts and normalise_text(doc.text) in exclude_texts:
            dropped += 1
            continue
        corpus[did] = doc
    queries, qrels = {}, {}
    for qid, q in ds.queries.items():
        rel = ds.relevant(qid)
        if rel and rel <= corpus.keys():
            queries[qid] = q
            qrels[qid] = ds.qrels[qid]
    return RetrievalDataset(ds.name, corpus, queries, qrels), dropped


def load_pairs_jsonl(path: Path) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row.get("query"), str) or not isinstance(row.get("positive"), str):
                raise ValueError(f"{path}:{n}: each line needs string fields 'query' and 'positive'")
            negs = row.get("negatives") or []
            if not isinstance(negs, list) or not all(isinstance(x, str) for x in negs):
                raise ValueError(f"{path}:{n}: 'negatives' must be a list of strings")
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no training pairs")
    return rows


class MiningEmbedder:
    """First-stage bi-encoder used to mine hard negatives (and for evaluation)."""

    def __init__(self, path: str | None = None, batch_size: int = 64):
        from sentence_transformers import SentenceTransformer

        self.path = path or packaged_minilm_path()
        self.model = SentenceTransformer(self.path, device="cpu")
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str]):
        return self.model.encode(
            list(texts), batch_size=self.batch_size, convert_to_tensor=True,
            normalize_embeddings=True, show_progress_bar=False,
        )


def top_k_ids(embedder: MiningEmbedder, doc_ids: list[str], doc_texts: list[str], queries: list[str], k: int,
              doc_emb=None) -> list[list[str]]:
    import torch

    if doc_emb is None:
        doc_emb = embedder.encode(doc_texts)
    q_emb = embedder.encode(queries)
    k = min(k, len(doc_ids))
    scores = q_emb @ doc_emb.T
    idx = torch.topk(scores, k=k, dim=1).indices.tolist()
    return [[doc_ids[i] for i in row] for row in idx]


def build_training_queries(
    sources: list[tuple[str, str | None]],
    embedder: MiningEmbedder,
    rng: random.Random,
    max_queries: dict[str, int],
    exclude_texts: set[str],
    mine_top: int,
    log: Callable[[str], None],
) -> tuple[list[TrainQuery], list[SourceInfo]]:
    out: list[TrainQuery] = []
    infos: list[SourceInfo] = []
    for path, include in sources:
        p = Path(path)
        if p.is_file() and p.suffix == ".jsonl":
            rows = load_pairs_jsonl(p)
            info = SourceInfo(name=p.stem, path=str(path), kind="jsonl", queries_available=len(rows))
            cap = max_queries.get(info.name, max_queries.get("*"))
            if cap and cap < len(rows):
                rows = rng.sample(rows, cap)
            pool = sorted({r["positive"] for r in rows} | {n for r in rows for n in r.get("negatives") or []})
            info.docs = len(pool)
            need_mining = [r for r in rows if not r.get("negatives")]
            mined: dict[int, list[str]] = {}
            if need_mining and len(pool) > 1:
                log(f"[{info.name}] mining negatives for {len(need_mining)} pairs among {len(pool)} passages")
                tops = top_k_ids(embedder, pool, pool, [r["query"] for r in need_mining], mine_top + 1)
                for r, top in zip(need_mining, tops):
                    mined[id(r)] = [t for t in top if t != r["positive"]][:mine_top]
            for r in rows:
                negs = list(r.get("negatives") or mined.get(id(r), []))
                out.append(TrainQuery(info.name, r["query"], [r["positive"]], negs))
            info.queries_used = len(rows)
            infos.append(info)
            continue
        if not is_beir_folder(p):
            raise ValueError(f"{path}: not a BEIR folder (corpus.jsonl, queries.jsonl, qrels.tsv) nor a .jsonl of pairs")
        ds, dropped = filter_dataset(load_dataset(p), include, exclude_texts)
        info = SourceInfo(name=ds.name, path=str(path), kind="beir", docs=len(ds.corpus), include=include,
                          excluded_overlap_docs=dropped)
        qs = ds.queries_with_qrels()
        info.queries_available = len(qs)
        cap = max_queries.get(ds.name, max_queries.get("*"))
        if cap and cap < len(qs):
            qs = rng.sample(qs, cap)
        info.queries_used = len(qs)
        if not qs:
            raise ValueError(f"{path}: no queries left after filtering (include={include!r})")
        log(f"[{ds.name}] {len(ds.corpus)} docs, {len(qs)}/{info.queries_available} queries; mining top-{mine_top}")
        doc_ids = list(ds.corpus)
        tops = top_k_ids(embedder, doc_ids, [ds.corpus[d].text for d in doc_ids], [q.text for q in qs],
                         mine_top + 8)
        for q, top in zip(qs, tops):
            rel = ds.relevant(q.id)
            negs = [ds.corpus[d].text for d in top if d not in rel][:mine_top]
            out.append(TrainQuery(ds.name, q.text, [ds.corpus[d].text for d in sorted(rel)], negs))
        infos.append(info)
    return out, infos
