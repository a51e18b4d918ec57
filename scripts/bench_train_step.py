"""Training speed of a reranker start on these CPUs: pairs/s of `reranker train`, each setting against the recipe's.

    nice -n 10 .venv/bin/python scripts/bench_train_step.py --base runs/start-e5-small --steps 4 --repeat 2
    nice -n 10 .venv/bin/python scripts/bench_train_step.py --base runs/start-e5-small --profile

The questions are the multilingual recipe's mix (CMRC 2018 DEV and SQuAD articles 0-37, 3 Chinese to 2 English),
each with its gold passage and 7 other passages of its corpus: a step's cost is set by the texts' lengths, not
by which passages they are, so no mining is needed to time it. Each variant trains ``--steps`` steps through
:func:`training.train.train` (its own process state: the same code path as a real run) and prints pairs/s over
its training time, and pairs per CPU second of this process (what a shared machine's load does not change as
much: with 2 threads it also counts the time one thread spins waiting for the other); variants run
interleaved, ``--repeat`` times, so the machine's load falls on each alike.
``--profile`` prints torch's operator table over two steps of each variant instead.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evaluation.datasets import load_dataset  # noqa: E402
from rag.settings import Settings  # noqa: E402
from training.data import SourceInfo, TrainQuery  # noqa: E402
from training.mine import save_mined  # noqa: E402
from training.train import TrainConfig, train  # noqa: E402

# name -> TrainConfig changes from the recipe's settings (scripts/train_student.sh multi before issue 38);
# multi-bg: scripts/train_student.sh multi-bg's
VARIANTS = {
    "recipe": {},
    "no attention dropout": {"attention_dropout": 0.0},
    "bf16 autocast": {"cpu_bf16": True},
    "each language padded alone": {"max_length_by_language": {"zh": 256}},
    "zh at 192": {"max_length_by_language": {"zh": 192}},
    "multi-bg": {"attention_dropout": 0.0, "cpu_bf16": True, "max_length_by_language": {"zh": 256}},
    "multi-bg, zh at 192": {"attention_dropout": 0.0, "cpu_bf16": True, "max_length_by_language": {"zh": 192}},
}


def questions(datasets: Path, name: str, include: str, count: int, rng: random.Random) -> list[TrainQuery]:
    ds = load_dataset(datasets / name)
    texts = [d.text for d in ds.corpus.values()]
    out = []
    for qid, rels in ds.qrels.items():
        gold = [d for d in rels if d.startswith(include) and d in ds.corpus]
        if gold and qid in ds.queries:
            out.append(TrainQuery(name, ds.queries[qid].text, [ds.corpus[gold[0]].text], rng.sample(texts, 8)))
    return rng.sample(out, min(count, len(out)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="the start to time (e.g. runs/start-e5-small)")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--queries-per-step", type=int, default=2)
    ap.add_argument("--threads", type=int, nargs="+", default=[2])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--variants", nargs="+", default=["recipe", "multi-bg"], choices=list(VARIANTS))
    ap.add_argument("--profile", action="store_true", help="torch's operator table over two steps per variant")
    args = ap.parse_args()
    rng = random.Random(5)
    datasets = Settings().datasets_dir
    mix = (questions(datasets, "cmrc2018", "DEV_", 60, rng)
           + questions(datasets, "squad11_dev", "s", 40, rng))
    with tempfile.TemporaryDirectory() as tmp:
        rng.shuffle(mix)
        mined = Path(tmp) / "mix.json"
        save_mined(mined, mix, [SourceInfo("cmrc2018", "cmrc2018", "beir"), SourceInfo("squad", "squad", "beir")],
                   {"retrieval": "random passages (speed only)"})
        for round_ in range(1 if args.profile else args.repeat):
            for threads in args.threads:
                for name in args.variants:
                    cfg = TrainConfig(datasets=[], mined=[str(mined)], out=str(Path(tmp) / "out"), base=args.base,
                                      max_length=256, queries_per_step=args.queries_per_step, negatives=7,
                                      max_steps=2 if args.profile else args.steps, threads=threads, device="cpu",
                                      head_lr=1e-3, seed=21, log_every=args.steps, **VARIANTS[name])
                    if args.profile:
                        profile(cfg, mix, name)
                        continue
                    cpu = {}

                    def clock(message: str) -> None:  # CPU time of this process from the first step to the last
                        if message.startswith("training:") or message.startswith(f"step {cfg.max_steps}/"):
                            cpu["start" if "start" not in cpu else "end"] = time.process_time()

                    summary = train(cfg, log=clock)
                    cpu_s = cpu["end"] - cpu["start"]
                    print(f"round {round_ + 1} | {name} | {threads} thread(s) | {summary['pairs']} pairs | "
                          f"{summary['train_seconds']:.0f} s | {summary['pairs'] / summary['train_seconds']:.2f} "
                          f"pairs/s | {cpu_s:.0f} CPU s | {summary['pairs'] / cpu_s:.2f} pairs per CPU second | "
                          f"load {os.getloadavg()[0]:.1f}", flush=True)
    return 0


def profile(cfg: TrainConfig, examples: list[TrainQuery], name: str) -> None:
    """torch's operator table over two steps after a first one, the model set up as train() sets it up."""
    import torch
    from sentence_transformers import CrossEncoder
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from training.steps import listwise_step, set_attention_dropout

    torch.set_num_threads(cfg.threads)
    ce = CrossEncoder(cfg.base, num_labels=1, max_length=cfg.max_length, device="cpu")
    model, tok = ce.model.float(), ce.tokenizer
    model.train()
    set_attention_dropout(model, cfg.attention_dropout)
    model.get_input_embeddings().weight.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-5)
    rng, texts = random.Random(1), [t for ex in examples for t in ex.positives + ex.negatives]

    def step(at: int) -> None:
        loss, _ = listwise_step(model, tok, examples[at:at + cfg.queries_per_step], cfg, rng, "cpu", texts)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step(0)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for at in (cfg.queries_per_step, 2 * cfg.queries_per_step):
            step(at)
    print(f"## {name} ({cfg.threads} thread(s)): two training steps of {cfg.queries_per_step} questions x 8 pairs")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15), flush=True)


if __name__ == "__main__":
    sys.exit(main())
