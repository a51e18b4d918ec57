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
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from evaluation.datasets import load_dataset

from rag.embedders.models import packaged_minilm_path
from training import checkpoint
from training.data import MiningEmbedder, normalise_text, build_training_queries, filter_dataset
from training.model_card import PACKAGED_BASE, model_card
from training.steps import distil_step, listwise_step, set_attention_dropout, start_on_teacher_scale

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
    # speed on a CPU (training.steps): pairs cut per question language, attention dropout, bf16 autocast
    max_length_by_language: dict[str, int] = field(default_factory=dict)
    attention_dropout: float | None = None  # None: the base's own
    cpu_bf16: bool = False
    # a run that outlives a session (training.checkpoint)
    checkpoint_dir: str | None = None
    checkpoint_every_min: float = 5.0  # 0: after every step
    keep_checkpoints: int = 3
    resume: bool = False  # go on from checkpoint_dir's newest checkpoint, if there is one
    stop_after_min: float | None = None  # checkpoint and stop after this many minutes (the session's share)


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


def _resume_from(cfg: TrainConfig, log: Callable[[str], None]) -> dict | None:
    """The newest checkpoint of ``cfg.checkpoint_dir`` when resuming (None: none yet, the run starts)."""
    path = checkpoint.latest(cfg.checkpoint_dir) if cfg.resume else None
    if path is None:
        if cfg.resume:
            log(f"no checkpoint in {cfg.checkpoint_dir} yet: starting")
        return None
    saved = checkpoint.load(path)
    differs = checkpoint.same_run(saved, cfg)
    if differs:
        raise ValueError(f"{path} is another run's (it differs in {', '.join(differs)}): give another "
                         "--checkpoint-dir, or the same settings")
    return {**saved, "path": str(path)}


def _write_progress(cfg: TrainConfig, run: checkpoint.RunState, state: str, path, pairs_per_s: float) -> None:
    pairs_per_step = cfg.queries_per_step * (1 + cfg.negatives)
    checkpoint.write_progress(
        cfg.checkpoint_dir, state=state, step=run.step, total_steps=run.total, pairs=run.pairs,
        pairs_planned=max(run.pairs, run.pairs + (run.total - run.step) * pairs_per_step),
        pairs_per_s=round(pairs_per_s, 3), train_seconds=round(run.train_seconds, 1), sessions=run.sessions,
        checkpoint=str(path or checkpoint.latest(cfg.checkpoint_dir) or ""), out=cfg.out, pid=os.getpid())


def train(cfg: TrainConfig, log: Callable[[str], None] = print) -> dict:
    """Run the whole recipe; writes a CrossEncoder folder + README.md to ``cfg.out``. Returns a summary
    (``finished: False`` when ``stop_after_min`` stopped it at a checkpoint)."""
    if (cfg.resume or cfg.stop_after_min is not None) and not cfg.checkpoint_dir:
        raise ValueError("--resume and --stop-after need --checkpoint-dir (where the run's checkpoints are)")
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
    set_attention_dropout(model, cfg.attention_dropout)
    if cfg.freeze_embeddings:  # the word-embedding matrix (11.7M parameters; e5's 96M) stays as in the base
        model.get_input_embeddings().weight.requires_grad_(False)
    resumed = _resume_from(cfg, log)

    if cfg.loss == "distil" and cfg.score_weight and not resumed:
        start_on_teacher_scale(model, tok, examples, cfg, device, log)
    head_names = ("classifier", "pooler")
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    enc_params = [p for n, p in trainable if not any(h in n for h in head_names)]
    head_params = [p for n, p in trainable if any(h in n for h in head_names)]
    opt = torch.optim.AdamW([
        {"params": enc_params, "lr": cfg.lr},
        {"params": head_params, "lr": cfg.head_lr},
    ], weight_decay=0.01)
    steps_per_epoch = math.ceil(len(examples) / cfg.queries_per_step)
    plan = {"total": steps_per_epoch * cfg.epochs}
    if cfg.max_steps:
        plan["total"] = min(plan["total"], cfg.max_steps)
    warm = max(1, int(plan["total"] * cfg.warmup))

    def lr_lambda(step: int) -> float:  # reads the plan when called: the time budget may shorten it
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (plan["total"] - step) / max(1, plan["total"] - warm))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
    all_texts = [t for ex in examples for t in ex.positives + ex.negatives]
    run = checkpoint.RunState(plan["total"], cfg.epochs)
    if resumed:
        run = checkpoint.restore(resumed, model, opt, sched, rng)
        plan["total"] = run.total
        log(f"resumed from {resumed['path']}: step {run.step}/{run.total}, {run.pairs} pairs, "
            f"{run.train_seconds / 60:.1f} min trained before")
    step_at_start, pairs_at_start, trained_before = run.step, run.pairs, run.train_seconds
    t0 = t5 = last_save = time.time()
    log(f"training: {plan['total']} steps x {cfg.queries_per_step} queries x (1+{cfg.negatives}) pairs, "
        f"max_length {cfg.max_length}{''.join(f', {k} {v}' for k, v in cfg.max_length_by_language.items())}, "
        f"lr {cfg.lr}/{cfg.head_lr}, seed {cfg.seed}")

    def report(state: str, path: Path | None = None) -> None:  # the progress file, when the run has a folder
        if cfg.checkpoint_dir:
            run.train_seconds = trained_before + time.time() - t0
            _write_progress(cfg, run, state, path, (run.pairs - pairs_at_start) / max(1e-9, time.time() - t0))

    def keep(state: str) -> None:  # a checkpoint, then the progress file naming it
        if cfg.checkpoint_dir:
            run.train_seconds = trained_before + time.time() - t0
            report(state, checkpoint.save(cfg.checkpoint_dir, run.step,
                                          checkpoint.snapshot(run, cfg, model, opt, sched, rng), cfg.keep_checkpoints))

    report("starting")
    while run.epoch < cfg.epochs and run.step < plan["total"]:
        if run.order is None:
            run.order = list(range(len(examples)))
            rng.shuffle(run.order)
        if run.index >= len(run.order):
            run.epoch, run.index, run.order = run.epoch + 1, 0, None
            continue
        batch = [examples[i] for i in run.order[run.index:run.index + cfg.queries_per_step]]
        if cfg.loss == "distil":
            loss, n_pairs = distil_step(model, tok, batch, cfg, rng, device)
        else:
            loss, n_pairs = listwise_step(model, tok, batch, cfg, rng, device, all_texts)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in trainable], 1.0)
        opt.step()
        sched.step()
        run.index += cfg.queries_per_step
        run.step += 1
        run.pairs += n_pairs
        run.losses.append(loss.item())
        steps_here = run.step - step_at_start
        if steps_here == 5:
            t5 = time.time()  # the first steps also pay for warm-up (CUDA context, allocator)
        if cfg.time_budget_min and not resumed and run.step == max(2, min(50, plan["total"] // 4)):
            # Measured speed -> the steps that fit; the linear decay then ends at the new total.
            per_step = (time.time() - t5) / (run.step - 5) if run.step > 5 else (time.time() - t0) / run.step
            fits = run.step + int((cfg.time_budget_min * 60 - (time.time() - t0)) / per_step)
            if fits < plan["total"]:
                log(f"time budget {cfg.time_budget_min} min: {fits} of {plan['total']} steps")
                plan["total"] = max(fits, warm + 1, run.step)
        run.total = plan["total"]
        if run.step % cfg.log_every == 0 or run.step == plan["total"]:
            el = time.time() - t0
            eta = el / steps_here * (plan["total"] - run.step)
            recent = run.losses[-cfg.log_every:]
            log(f"step {run.step}/{plan['total']} epoch {run.epoch + 1} loss {sum(recent) / len(recent):.4f} "
                f"{(run.pairs - pairs_at_start) / el:.1f} pairs/s elapsed {el / 60:.1f} min ETA {eta / 60:.1f} min")
            report("running")
        stop = cfg.stop_after_min is not None and time.time() - t0 >= cfg.stop_after_min * 60
        if run.step < plan["total"] and (stop or time.time() - last_save >= cfg.checkpoint_every_min * 60):
            keep("stopped" if stop else "running")
            last_save = time.time()
            if stop:
                log(f"stopped after {cfg.stop_after_min} min at step {run.step}/{plan['total']}: "
                    f"resume with --resume (checkpoints in {cfg.checkpoint_dir})")
                return {"finished": False, "steps": run.step, "pairs": run.pairs, "total_steps": plan["total"]}
    keep("trained")  # the last step's checkpoint: a run killed while it saves or validates resumes at the end
    step, pairs_seen, losses = run.step, run.pairs, run.losses
    train_s = trained_before + time.time() - t0
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
        "finished": True,
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
    if cfg.checkpoint_dir:
        _write_progress(cfg, run, "done", None, (run.pairs - pairs_at_start) / max(1e-9, train_s - trained_before))
    log(f"saved to {out} ({summary['total_seconds'] / 60:.1f} min total)")
    return summary


def _inherited_calibration(cfg: TrainConfig, mined_by: list[dict]) -> list[float] | None:
    """The teacher's calibration, for a student taught its teacher's logits themselves (``--score-weight``):
    it reads on the same scale, so its readable score is the teacher's fitted probability; None otherwise."""
    if cfg.loss != "distil" or not cfg.score_weight:
        return None
    return next((fs["teacher"]["calibration"] for fs in mined_by if fs.get("teacher", {}).get("calibration")), None)
