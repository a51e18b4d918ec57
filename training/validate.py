"""Held-out checks during training: first stage vs reranked hit@k / MRR@k (evaluation's metrics)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from evaluation.datasets import RetrievalDataset
from evaluation.metrics import evaluate_runs
from training.data import MiningEmbedder


def ce_scorer(ce) -> Callable[[str, list[str]], list[float]]:
    def score(query: str, texts: list[str]) -> list[float]:
        return [float(s) for s in ce.predict([(query, t) for t in texts], batch_size=32, show_progress_bar=False)]

    return score


def evaluate_rerank(ds: RetrievalDataset, embedder: MiningEmbedder, scorer: Callable[[str, list[str]], list[float]] | None,
                    limit: int | None = 300, first_k: int = 20, k: int = 5, doc_emb=None,
                    alphas: Sequence[float] = ()) -> dict:
    """First stage (embedder top-``first_k``) vs reranked top-``k``: hit@k and MRR@k.

    ``alphas``: also report score interpolation ``a*rerank + (1-a)*first stage`` after per-query
    min-max normalisation (:func:`rag.rerank.interpolate`) for each ``a``."""
    import torch

    from rag.rerank import interpolate

    qs = ds.queries_with_qrels(limit)
    doc_ids = list(ds.corpus)
    if doc_emb is None:
        doc_emb = embedder.encode([ds.corpus[d].text for d in doc_ids])
    q_emb = embedder.encode([q.text for q in qs])
    sims = q_emb @ doc_emb.T
    top = torch.topk(sims, k=min(first_k, len(doc_ids)), dim=1)
    first, reranked = [], []
    inter = {a: [] for a in alphas}
    for qi, q in enumerate(qs):
        ids = [doc_ids[i] for i in top.indices[qi].tolist()]
        fs = top.values[qi].tolist()
        rel = ds.relevant(q.id)
        first.append((rel, ids))
        if scorer is not None:
            rs = scorer(q.text, [ds.corpus[d].text for d in ids])
            order = sorted(range(len(ids)), key=lambda i: -rs[i])
            reranked.append((rel, [ids[i] for i in order]))
            for a in alphas:
                comb = interpolate(rs, fs, a)
                o = sorted(range(len(ids)), key=lambda i: -comb[i])
                inter[a].append((rel, [ids[i] for i in o]))
    res = {"dataset": ds.name, "queries": len(qs), "first_k": first_k, "k": k}
    f = evaluate_runs(first, k)
    res.update({f"first_hit@{k}": round(f.hit, 4), f"first_mrr@{k}": round(f.mrr, 4),
                f"first_hit@{first_k}": round(evaluate_runs(first, first_k).hit, 4)})
    if scorer is not None:
        r = evaluate_runs(reranked, k)
        res.update({f"rerank_hit@{k}": round(r.hit, 4), f"rerank_mrr@{k}": round(r.mrr, 4)})
        for a in alphas:
            s = evaluate_runs(inter[a], k)
            res[f"interp{a}_hit@{k}"] = round(s.hit, 4)
            res[f"interp{a}_mrr@{k}"] = round(s.mrr, 4)
    return res
