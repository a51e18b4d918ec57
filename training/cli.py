"""``rerank-rag reranker train|mine|label|student-start|export``: the command line of training (rag.cli wires it in)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from training.distill import EVERY_OTHER, student_start
from training.export import export_onnx
from training.train import DEFAULT_MAX_LENGTH, TrainConfig, train



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
    p.add_argument("--dataset", action="append", default=[], metavar="PATH",
                   help="BEIR folder (corpus.jsonl, queries.jsonl, qrels.tsv) or .jsonl of "
                        '{"query","positive","negatives"?}; repeat for several')
    p.add_argument("--mined", action="append", default=[], metavar="FILE",
                   help="queries and negatives mined beforehand by `reranker mine` (repeat for several)")
    p.add_argument("--out", help="output folder (loads with sentence_transformers.CrossEncoder); not with "
                   "--from-feedback, which writes under the data dir")
    p.add_argument("--from-feedback", action="store_true",
                   help="fine-tune the reranker --collection uses on that collection's feedback marks (hard negatives "
                        "from its first stage), score old and new on held-out marked questions and the dev set "
                        "RAG_FEEDBACK_DEV_SET; the collection keeps its reranker until switched (Feedback page)")
    p.add_argument("--base", default=None, help="base checkpoint (default: packaged all-MiniLM-L6-v2)")
    p.add_argument("--embedder", default=None, help="first-stage embedder for hard negatives (default: packaged MiniLM)")
    p.add_argument("--include", action="append", metavar="NAME=REGEX",
                   help="keep only docs of dataset NAME (folder name) whose id matches REGEX, e.g. "
                        "squad11_dev='^s(0[0-9]|[12][0-9]|3[0-7])_'")
    p.add_argument("--exclude-overlap", action="append", default=[], metavar="DIR",
                   help="drop training docs whose text appears in this BEIR folder (keeps it held out)")
    p.add_argument("--max-queries", action="append", metavar="[NAME=]N",
                   help="cap on queries per dataset or mined source (random sample with the seed)")
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
    p.add_argument("--device", default="auto", help="auto (cuda when available), cuda or cpu")
    p.add_argument("--time-budget", type=float, default=None, metavar="MIN",
                   help="shorten the schedule so that training ends within MIN minutes (measured speed)")
    p.add_argument("--train-embeddings", action="store_true",
                   help="also train the word-embedding matrix (default: frozen, as in the base)")
    p.add_argument("--log-every", type=int, default=10, help="progress line every N steps")
    p.add_argument("--val", action="append", default=[], metavar="DIR", help="held-out BEIR folder to validate on")
    p.add_argument("--val-include", action="append", metavar="NAME=REGEX")
    p.add_argument("--val-max-queries", type=int, default=200)
    p.add_argument("--loss", choices=("listwise", "distil"), default="listwise",
                   help="listwise: cross-entropy on the gold passage; distil: the teacher's scores of a labelled "
                        "--mined file (`reranker label`), listwise KL")
    p.add_argument("--temperature", type=float, default=1.0, help="distil: softmax temperature")
    p.add_argument("--languages", default="en",
                   help="languages the model reads, e.g. 'en, zh' (written to reranker.json: the app's language "
                        "gate reranks questions in these languages)")
    p.add_argument("--gold-weight", type=float, default=0.0,
                   help="distil: weight of the gold label's cross-entropy beside the KL term")
    p.add_argument("--score-weight", type=float, default=0.0,
                   help="distil: weight of the squared error to the teacher's logits (its scale, which the "
                        "confident blend reads) beside the KL term")
    p.add_argument("--max-length-for", action="append", metavar="LANG=N",
                   help="cut the pairs of a zh, ja or ko question (by script) at N tokens instead of --max-length; "
                        "each language's pairs are padded to their own longest")
    p.add_argument("--attention-dropout", type=float, default=None, metavar="P",
                   help="attention-probability dropout (default: the base's); 0 lets a CPU run SDPA's fast kernel "
                        "and skip drawing a mask per attention weight")
    p.add_argument("--cpu-bf16", action="store_true",
                   help="bf16 autocast on a CPU too (fast where the CPU has AMX or AVX-512 BF16; fp32 master weights)")
    p.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                   help="write checkpoints (weights, optimizer, schedule, data position, random states) and "
                        "progress.json here")
    p.add_argument("--checkpoint-every", type=float, default=5.0, metavar="MIN",
                   help="minutes between checkpoints (0: after every step)")
    p.add_argument("--keep-checkpoints", type=int, default=3, help="how many of the newest checkpoints stay")
    p.add_argument("--resume", action="store_true",
                   help="go on from --checkpoint-dir's newest checkpoint (start when there is none)")
    p.add_argument("--stop-after", type=float, default=None, metavar="MIN",
                   help="checkpoint and stop after MIN minutes (the run goes on with --resume)")


def config_from_args(a: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        datasets=a.dataset, mined=a.mined, out=a.out, base=a.base, embedder=a.embedder, include=_kv(a.include),
        exclude_overlap=a.exclude_overlap, max_queries=_kv(a.max_queries, int), seed=a.seed,
        max_length=a.max_length, epochs=a.epochs, max_steps=a.max_steps, queries_per_step=a.queries_per_step,
        negatives=a.negatives, mine_top=a.mine_top, lr=a.lr, head_lr=a.head_lr, warmup=a.warmup,
        threads=a.threads, device=a.device, time_budget_min=a.time_budget,
        freeze_embeddings=not a.train_embeddings, log_every=a.log_every, val=a.val, val_include=_kv(a.val_include),
        val_max_queries=a.val_max_queries, loss=a.loss, temperature=a.temperature, gold_weight=a.gold_weight,
        score_weight=a.score_weight, languages=a.languages, max_length_by_language=_kv(a.max_length_for, int),
        attention_dropout=a.attention_dropout, cpu_bf16=a.cpu_bf16, checkpoint_dir=a.checkpoint_dir,
        checkpoint_every_min=a.checkpoint_every, keep_checkpoints=a.keep_checkpoints, resume=a.resume,
        stop_after_min=a.stop_after,
    )


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _run_mine(a: argparse.Namespace, settings=None) -> int:
    import random

    from evaluation.datasets import load_dataset
    from rag.settings import Settings
    from training.data import normalise_text
    from training.mine import mine_dataset, save_mined

    settings = settings or Settings()
    includes, hold_out, caps = _kv(a.include), _kv(a.hold_out_first, int), _kv(a.max_queries, int)
    exclude = {normalise_text(doc.text) for d in a.exclude_overlap for doc in load_dataset(d).corpus.values()}
    rng = random.Random(a.seed)
    queries, sources = [], []
    try:
        for d in a.dataset:
            name = Path(d).name
            got, info = mine_dataset(settings, d, include=includes.get(name), hold_out_first=hold_out.get(name, 0),
                                     exclude_texts=exclude, max_queries=caps.get(name, caps.get("*")), rng=rng,
                                     top=a.top, log=_log)
            queries += got
            sources.append(info)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    first_stage = {"retrieval": settings.retrieval, "fusion": settings.fusion, "embed_model": settings.embed_model,
                   "first_stage_k": settings.first_stage_k, "top": a.top}
    save_mined(a.out, queries, sources, first_stage)
    _log(f"{len(queries)} queries with {sum(len(q.negatives) for q in queries)} negatives -> {a.out}")
    return 0


def _run_train(a: argparse.Namespace, settings=None) -> int:
    if getattr(a, "from_feedback", False):
        return _run_from_feedback(settings)
    if not a.out:
        print("error: give --out (or --from-feedback)", file=sys.stderr)
        return 2
    try:
        train(config_from_args(a), log=_log)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _run_from_feedback(settings=None) -> int:
    from rag.settings import Settings
    from training.feedback import NotEnoughFeedback
    from training.feedback_job import TrainingBusy, start, status

    settings = settings or Settings()
    try:
        job = start(settings, settings.collection, background=False, log=_log)
    except (NotEnoughFeedback, TrainingBusy, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    done = status(job)
    result = done["result"]
    print(f"{result['metric']} (split: {result['split']['train']} trained on, {result['split']['held_out']} held out, "
          f"{result['split']['rule']}; training {done['train_seconds'] / 60:.1f} min, {done['steps']} steps)")
    print(f"{'set':<28} {'questions':>9} {'first stage':>11} {'current':>8} {'fine-tuned':>10}")
    for row in result["rows"]:
        print(f"{row['set']:<28} {row['questions']:>9} {row['first stage']:>11.3f} {row['current']:>8.3f} "
              f"{row['fine-tuned']:>10.3f}")
    print(f"{result['verdict']}. The new reranker: {done['reranker']}")
    print("The collection keeps its reranker until you switch on the Feedback page.")
    return 0


def register(subparsers, parent_parser=None) -> None:
    """CLI contract (rag.cli COMMAND_MODULES): ``rerank-rag reranker train|mine|export ...``;
    handlers are ``func(args, settings) -> int``."""
    parents = [parent_parser] if parent_parser is not None else []
    p = subparsers.add_parser("reranker", help="reranker tools (train)", parents=parents)
    sub = p.add_subparsers(dest="reranker_command", required=True)
    t = sub.add_parser("train", help="fine-tune a cross-encoder reranker", parents=parents)
    add_train_arguments(t)
    t.set_defaults(func=_run_train)
    m = sub.add_parser("mine", help="mine training queries and hard negatives with the app's first stage",
                       parents=parents)
    m.add_argument("--dataset", action="append", required=True, metavar="DIR", help="BEIR folder; repeat")
    m.add_argument("--out", required=True, help="the mined file (JSON) that `reranker train --mined` reads")
    m.add_argument("--include", action="append", metavar="NAME=REGEX",
                   help="train only on docs of dataset NAME whose id matches REGEX (the rest stays held out)")
    m.add_argument("--hold-out-first", action="append", metavar="NAME=N",
                   help="keep dataset NAME's first N judged queries (what eval --queries N reads) held out, "
                        "and every query sharing a relevant document with them")
    m.add_argument("--exclude-overlap", action="append", default=[], metavar="DIR",
                   help="drop training docs whose text appears in this BEIR folder (keeps it held out)")
    m.add_argument("--max-queries", action="append", metavar="[NAME=]N", help="cap on queries per dataset")
    m.add_argument("--top", type=int, default=20, help="negative pool: the first stage's top-N non-relevant")
    m.add_argument("--seed", type=int, default=13)
    m.set_defaults(func=_run_mine)
    lab = sub.add_parser("label", help="score every mined candidate with a teacher reranker (for --loss distil)",
                         parents=parents)
    lab.add_argument("--mined", required=True, help="a file written by `reranker mine`")
    lab.add_argument("--out", required=True, help="the labelled file (same format, with the teacher's logits)")
    lab.add_argument("--teacher", default=None,
                     help="reranker spec NAME_OR_PATH[@onnx|@torch][#max_length] (default: the settings' reranker)")
    lab.add_argument("--negatives", type=int, default=None, help="keep each question's first N negatives")
    lab.add_argument("--max-queries", type=int, default=None, help="label only the first N questions")
    lab.add_argument("--entity-swaps", action="store_true",
                     help="one more negative per question: its gold passage with a name it shares with the question "
                          "renamed to another question's (training/entity_swap.py)")
    lab.set_defaults(func=_run_label)
    st = sub.add_parser("student-start", help="a 6-layer start from a 12-layer teacher's every other layer",
                        parents=parents)
    st.add_argument("--teacher", default=None, help="catalog name or folder (default: the settings' reranker)")
    st.add_argument("--out", required=True, help="folder to write (torch weights, loads as a CrossEncoder)")
    st.add_argument("--layers", default=",".join(map(str, EVERY_OTHER)), help="teacher layers to keep, in order")
    st.set_defaults(func=_run_student_start)
    e = sub.add_parser("export", help="export a trained reranker to (int8) ONNX for fast CPU inference",
                       parents=parents)
    e.add_argument("src", help="trained model folder (output of `reranker train`)")
    e.add_argument("dst", help="folder to write (config, tokenizer, onnx/)")
    e.add_argument("--fp32", action="store_true", help="export fp32 ONNX without int8 quantisation")
    e.add_argument("--keep-fp32", action="store_true", help="keep onnx/model.onnx next to the int8 file")
    e.set_defaults(func=_run_export)


def _run_label(a: argparse.Namespace, settings=None) -> int:
    from rag.settings import Settings
    from training.teacher import label_mined

    teacher = a.teacher or (settings or Settings()).reranker
    try:
        info = label_mined(a.mined, a.out, teacher, negatives=a.negatives, max_queries=a.max_queries,
                           entity_swaps=a.entity_swaps, log=_log)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _log(f"{info['pairs']} pairs labelled by {info['name']} in {info['seconds']:.0f} s -> {a.out}")
    return 0


def _run_student_start(a: argparse.Namespace, settings=None) -> int:
    from rag.settings import Settings

    teacher = a.teacher or (settings or Settings()).reranker
    layers = tuple(int(x) for x in a.layers.split(","))
    out = student_start(teacher, a.out, layers)
    _log(f"{len(layers)} layers ({a.layers}) of {teacher} -> {out}")
    return 0


def _run_export(a: argparse.Namespace, settings=None) -> int:
    path = export_onnx(a.src, a.dst, quantize=not a.fp32, keep_fp32=a.keep_fp32)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.train", description="fine-tune a cross-encoder reranker")
    add_train_arguments(p)
    return _run_train(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
