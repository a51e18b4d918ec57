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

On a CUDA machine (``--device auto``, the default) it trains there in bf16 autocast; ``--time-budget MIN``
shortens the schedule, once the speed is measured, so that training ends within that many minutes (a lent GPU
is lent for minutes). ``--mined FILE`` reads queries and negatives mined beforehand by ``reranker mine``
(:mod:`training.mine`, the product's hybrid first stage), so mining and training can run on different machines.

Inputs are BEIR-format folders (``corpus.jsonl``, ``queries.jsonl``, ``qrels.tsv``) or a
``.jsonl`` file of ``{"query", "positive", "negatives"?}`` objects, so a team can adapt the
reranker to its own knowledge base. ``--include NAME=REGEX`` keeps only the documents of a
dataset whose id matches (e.g. squad articles 0-37), ``--exclude-overlap DIR`` drops
documents whose text also appears in another set (so that set stays held out).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from evaluation.datasets import load_dataset

from rag.embedders.models import packaged_minilm_path
from training.data import MiningEmbedder, normalise_text, build_training_queries, filter_dataset
from training.model_card import PACKAGED_BASE, model_card

DEFAULT_MAX_LENGTH = 192




def describe_base(path: str) -> str:
    """How a model card names the base: the package, or a path relative to the working directory,
    so that a card written on one machine does not carry that machine's absolute paths."""
    try:
        if Path(path).resolve() == Path(packaged_minilm_path()).resolve():
            return PACKAGED_BASE
    except ImportError:  # a training machine without the package (a lent GPU): the base was carried there
        pass
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def previous_training(base: str) -> dict | None:
    """The summary of the run that produced ``base`` when it is itself a ``reranker train`` output."""
    summary = Path(base) / "training_summary.json"
    return json.loads(summary.read_text(encoding="utf-8")) if summary.is_file() else None


@dataclass
class TrainConfig:
    datasets: list[str]
    out: str
    mined: list[str] = field(default_factory=list)
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
    device: str = "auto"  # auto = cuda when available, else cpu
    time_budget_min: float | None = None
    freeze_embeddings: bool = True
    log_every: int = 10
    val: list[str] = field(default_factory=list)
    val_include: dict[str, str] = field(default_factory=dict)
    val_max_queries: int = 200
    loss: str = "listwise"  # listwise: cross-entropy on the gold passage; distil: the teacher's scores (training.distill)
    temperature: float = 1.0  # distil: softmax temperature of teacher and student
    gold_weight: float = 0.0  # distil: weight of the gold label's cross-entropy beside the KL term
    score_weight: float = 0.0  # distil: weight of the squared logit error (the teacher's scale) beside the KL term
    languages: str = "en"  # what the model reads (rag.catalog.folder_entry): the language gate opens for these


def cap_per_source(queries: list, caps: dict[str, int], rng: random.Random) -> list:
    """At most ``caps[NAME]`` of each source's queries, a seeded sample (NAME: the source's name, e.g.
    ``emanual_samsung/smarttv``, or its last part, ``smarttv``; ``*``: every source): so one large mined file
    does not drown a small one in the shuffled mix."""
    by_source: dict[str, list] = {}
    for q in queries:
        by_source.setdefault(q.source, []).append(q)
    out = []
    for source, group in by_source.items():
        cap = caps.get(source, caps.get(source.rsplit("/", 1)[-1], caps.get("*")))
        out += rng.sample(group, cap) if cap is not None and cap < len(group) else group
    return out


def _machine(threads: int, device: str) -> str:
    import os

    import torch

    from evaluation.machine import cpu_model

    gpu = torch.cuda.get_device_name(0) + " (bf16 autocast)" if device == "cuda" else "no GPU"
    return f"{os.cpu_count()} CPU cores ({cpu_model()}), torch threads {threads}, {gpu}"


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
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device

    examples, infos, mined_by = [], [], []
    for f in cfg.mined:
        from training.mine import load_mined

        queries, sources, first_stage = load_mined(f)
        kept = cap_per_source(queries, cfg.max_queries, rng)
        examples += kept
        for info in sources:  # the model card states what the mix holds, not what was mined or labelled
            info.queries_used = sum(q.source == info.name for q in kept)
        infos += sources
        mined_by.append(first_stage)
    embedder = None
    if cfg.datasets:
        exclude_texts: set[str] = set()
        for d in cfg.exclude_overlap:
            exclude_texts |= {normalise_text(doc.text) for doc in load_dataset(d).corpus.values()}
        embedder = MiningEmbedder(cfg.embedder)
        sources = []
        for d in cfg.datasets:
            name = Path(d).stem if Path(d).is_file() else Path(d).name
            sources.append((d, cfg.include.get(name)))
        mined, mined_infos = build_training_queries(sources, embedder, rng, cfg.max_queries, exclude_texts,
                                                    cfg.mine_top, log)
        examples += mined
        infos += mined_infos
    if not examples:
        raise ValueError("nothing to train on: give --dataset or --mined")
    if cfg.loss == "distil":
        from training.distill import require_labels

        require_labels(examples)
    rng.shuffle(examples)
    t_mined = time.time()
    log(f"{len(examples)} training queries ready in {t_mined - t_start:.0f}s")

    _set_seed(cfg.seed)  # head init does not depend on how much mining consumed
    ce = CrossEncoder(base, num_labels=1, max_length=cfg.max_length, device=device)
    model, tok = ce.model.float(), ce.tokenizer  # fp32 master weights whatever dtype the base was saved in
    model.train()
    if cfg.freeze_embeddings:  # the 11.7M-parameter word-embedding matrix stays as in the base
        model.get_input_embeddings().weight.requires_grad_(False)

    if cfg.loss == "distil" and cfg.score_weight:
        _start_on_teacher_scale(model, tok, examples, cfg, device, log)
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

    def lr_lambda(step: int) -> float:  # reads ``total`` when called: the time budget may shorten it
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (total - step) / max(1, total - warm))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
    all_texts = [t for ex in examples for t in ex.positives + ex.negatives]
    step, pairs_seen, losses = 0, 0, []
    t0 = t5 = time.time()
    log(f"training: {total} steps x {cfg.queries_per_step} queries x (1+{cfg.negatives}) pairs, "
        f"max_length {cfg.max_length}, lr {cfg.lr}/{cfg.head_lr}, seed {cfg.seed}")
    done = False
    for epoch in range(cfg.epochs):
        order = list(range(len(examples)))
        rng.shuffle(order)
        for b in range(0, len(order), cfg.queries_per_step):
            batch = [examples[i] for i in order[b:b + cfg.queries_per_step]]
            if cfg.loss == "distil":
                loss, n_pairs = _distil_step(model, tok, batch, cfg, rng, device)
            else:
                loss, n_pairs = _listwise_step(model, tok, batch, cfg, rng, device, all_texts)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for _, p in trainable], 1.0)
            opt.step()
            sched.step()
            step += 1
            pairs_seen += n_pairs
            losses.append(loss.item())
            if step == 5:
                t5 = time.time()  # the first steps also pay for warm-up (CUDA context, allocator)
            if cfg.time_budget_min and step == max(2, min(50, total // 4)):
                # Measured speed -> the steps that fit; the linear decay then ends at the new total.
                per_step = (time.time() - t5) / (step - 5) if step > 5 else (time.time() - t0) / step
                fits = step + int((cfg.time_budget_min * 60 - (time.time() - t0)) / per_step)
                if fits < total:
                    log(f"time budget {cfg.time_budget_min} min: {fits} of {total} steps")
                    total = max(fits, warm + 1, step)
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
        "mined_by": mined_by,
        "sources": [asdict(i) for i in infos],
        "train_queries": len(examples),
        "steps": step,
        "pairs": pairs_seen,
        "train_seconds": round(train_s, 1),
        "mining_seconds": round(t_mined - t_start, 1),
        "final_loss_avg_last_50": round(sum(losses[-50:]) / max(1, len(losses[-50:])), 4),
        "machine": _machine(cfg.threads, device),
        "validation": [],
    }
    if cfg.val:
        from training.validate import ce_scorer, evaluate_rerank

        embedder = embedder or MiningEmbedder(cfg.embedder)
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
    from rag.catalog import FOLDER_INFO

    declared = {"languages": cfg.languages, "max_length": cfg.max_length, "license": "see README.md"}
    calibration = _inherited_calibration(cfg, mined_by)
    if calibration:
        declared["calibration"] = calibration
    (out / FOLDER_INFO).write_text(json.dumps(declared, indent=2) + "\n")
    log(f"saved to {out} ({summary['total_seconds'] / 60:.1f} min total)")
    return summary


def _inherited_calibration(cfg: TrainConfig, mined_by: list[dict]) -> list[float] | None:
    """The teacher's calibration, for a student taught its teacher's logits themselves (``--score-weight``):
    it reads on the same scale, so its readable score is the teacher's fitted probability; None otherwise."""
    if cfg.loss != "distil" or not cfg.score_weight:
        return None
    return next((fs["teacher"]["calibration"] for fs in mined_by if fs.get("teacher", {}).get("calibration")), None)


def _start_on_teacher_scale(model, tok, examples, cfg: TrainConfig, device: str, log, questions: int = 32) -> None:
    """Rescale the start's head to its teacher's logits over the first labelled questions (distill.match_teacher_scale)."""
    import torch

    from training.distill import match_teacher_scale

    sample = [ex for ex in examples if ex.positive_scores][:questions]
    pairs = [(ex.query, text) for ex in sample for text in ex.positives + ex.negatives]
    target = torch.tensor([x for ex in sample for x in ex.positive_scores + ex.negative_scores])
    model.eval()  # no dropout while measuring the scale
    with torch.no_grad():
        logits = torch.cat([_pair_logits(model, tok, [q for q, _ in pairs[i:i + 64]], [d for _, d in pairs[i:i + 64]],
                                         cfg, device).cpu() for i in range(0, len(pairs), 64)])
    model.train()
    a, c = match_teacher_scale(model.classifier, logits, target)
    log(f"start rescaled to the teacher's logits over {len(pairs)} pairs: {a:.3f} x logit {c:+.3f}")


def _pair_logits(model, tok, queries: list[str], docs: list[str], cfg: TrainConfig, device: str):
    """The model's logit per (query, passage) pair, one flat tensor; bf16 autocast on CUDA."""
    import torch

    enc = tok(queries, docs, padding=True, truncation="only_second", max_length=cfg.max_length,
              return_tensors="pt").to(device)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
        return model(**enc).logits.float().view(-1)


def _listwise_step(model, tok, batch, cfg: TrainConfig, rng: random.Random, device: str, all_texts: list[str]):
    """Cross-entropy of the gold passage against ``cfg.negatives`` mined ones: (loss, pairs)."""
    import torch

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
    logits = _pair_logits(model, tok, queries, docs, cfg, device).view(len(batch), 1 + cfg.negatives)
    gold = torch.zeros(len(batch), dtype=torch.long, device=device)
    return torch.nn.functional.cross_entropy(logits, gold), len(docs)


def _distil_step(model, tok, batch, cfg: TrainConfig, rng: random.Random, device: str):
    """The teacher's scores over each question's candidates as targets (training.distill): (loss, pairs)."""
    import torch

    from training.distill import distil_loss, sample_candidates

    lists = [sample_candidates(ex, cfg.negatives, rng) for ex in batch]
    labelled = torch.tensor([scores is not None for _, scores in lists], device=device)
    width = max(len(texts) for texts, _ in lists)
    queries = [ex.query for ex, (texts, _) in zip(batch, lists) for _ in texts]
    docs = [t for texts, _ in lists for t in texts]
    flat = _pair_logits(model, tok, queries, docs, cfg, device)
    student = torch.zeros(len(batch), width, device=device)
    teacher = torch.zeros(len(batch), width, device=device)
    mask = torch.zeros(len(batch), width, dtype=torch.bool, device=device)
    at = 0
    for row, (texts, scores) in enumerate(lists):
        student[row, :len(texts)] = flat[at:at + len(texts)]
        if scores is not None:
            teacher[row, :len(texts)] = torch.tensor(scores, device=device)
        mask[row, :len(texts)] = True
        at += len(texts)
    return distil_loss(student, teacher, mask, cfg.temperature, cfg.gold_weight, labelled,
                       cfg.score_weight), len(docs)
