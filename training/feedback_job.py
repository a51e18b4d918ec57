"""A feedback fine-tune as a background job: one at a time per store, its status on disk, safe to kill.

    python -m training.feedback_job JOB_DIR      # what start() spawns; not meant to be run by hand

Layout under the data dir: ``rerankers/training.lock`` (an flock: held by whoever prepares or trains, so a
second training is refused while one runs, and the kernel releases it when that process dies, kill -9
included), ``rerankers/jobs/<job>/`` (``job.json``: what to do; ``status.json``: where it is; ``log.txt``;
the training inputs), and the result ``rerankers/<collection>-<YYYYMMDD-HHMMSS>/``.

The model is written to ``<name>.partial`` and renamed only once it is whole, and a collection changes reranker
only when someone clicks to switch, so a training killed at any point leaves the reranker in use as it was;
its status then reads ``running`` while nobody holds the lock, which :func:`status` reports as stopped.

Preparation (reading feedback, searching each question: :func:`training.feedback.prepare`) runs in the process
that asked, which holds the store; the spawned process only trains and scores, from files.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from rag.settings import REPO_ROOT, Settings

RUNNING = ("preparing", "training", "evaluating")
# Negatives beside each positive per step: 3, not train.py's 7, so that a CPU's few minutes cover more marked
# questions (a 12-layer model reads ~1.5-3 pairs/s on 2 shared cores); the model already ranks, it adapts.
NEGATIVES_PER_STEP = 3
_STEP = re.compile(r"step (\d+)/(\d+) ")


class TrainingBusy(RuntimeError):
    """Another feedback training holds this store's lock."""


def rerankers_dir(settings: Settings) -> Path:
    return Path(settings.data_dir).expanduser().resolve() / "rerankers"


def _try_lock(root: Path) -> int | None:
    """An fd holding the training lock of the store whose rerankers live in ``root``, or None when another
    process (or another fd of this one) holds it."""
    path = root / "training.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def training_running(settings: Settings) -> bool:
    return _locked(rerankers_dir(settings))


def _locked(root: Path) -> bool:
    fd = _try_lock(root)
    if fd is None:
        return True
    os.close(fd)
    return False


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)  # a reader never sees half a status


def _update(job_dir: Path, **changes) -> dict:
    path = job_dir / "status.json"
    current = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    current.update(changes, updated_at=time.time())
    _write_json(path, current)
    return current


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-_")[:40] or "collection"


def start(settings: Settings, collection: str, *, background: bool = True,
          log: Callable[[str], None] | None = None) -> Path:
    """Start a fine-tune of ``collection``'s reranker on its feedback; returns the job folder.

    ``background``: preparation in a thread of this process, then training in a process of its own (the app:
    closing the page stops neither); otherwise all of it here, now (the command line). Raises TrainingBusy
    while another training of this store runs, NotEnoughFeedback (before anything starts) when too few
    questions are marked."""
    from rag.feedback import collection_reranker
    from training.feedback import check_enough

    check_enough(settings, collection)
    fd = _try_lock(rerankers_dir(settings))
    if fd is None:
        raise TrainingBusy("a feedback training of this store is running; wait for it (the Feedback page shows it)")
    try:
        prune_runs(settings, keep=settings.feedback_keep_runs - 1, protect=models_in_use(settings))  # + this one
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        name = f"{_slug(collection)}-{stamp}"
        job_dir = rerankers_dir(settings) / "jobs" / name
        job_dir.mkdir(parents=True, exist_ok=True)
        current = collection_reranker(settings, collection) or settings.reranker
        dumped = settings.model_dump(mode="json", exclude={"openai_api_key"})  # the key never goes to disk
        # absolute: the training process runs in the checkout, wherever this one was started
        dumped.update(data_dir=str(Path(settings.data_dir).expanduser().resolve()),
                      datasets_dir=str(Path(settings.datasets_dir).expanduser().resolve()))
        job = {"collection": collection, "reranker": current, "out": str(rerankers_dir(settings) / name),
               "settings": dumped}
        _write_json(job_dir / "job.json", job)
        _update(job_dir, state="preparing", collection=collection, current=current, started_at=time.time(),
                message="reading the feedback and searching each marked question")
    except BaseException:
        os.close(fd)
        raise
    if background:
        threading.Thread(target=_prepare_and_spawn, args=(settings, collection, job_dir, fd), daemon=True,
                         name=f"feedback-training-{name}").start()
        return job_dir
    try:
        _prepare(settings, collection, job_dir, log)
        run(job_dir, log)
    finally:
        os.close(fd)
    return job_dir


def models_in_use(settings: Settings) -> set[str]:
    """Every fine-tune a collection uses or goes back to with one click (its choice's current and previous)."""
    from rag.feedback import FeedbackStore
    from rag.store_names import collection_names

    store = FeedbackStore(settings)
    return {name for collection in collection_names(settings) if (choice := store.choice(collection))
            for name in (choice["reranker"], choice["previous"]) if name}


def prune_runs(settings: Settings, keep: int, protect: set[str]) -> list[Path]:
    """Delete all but the ``keep`` newest fine-tune runs (each a model folder of ~150 MB and its job folder), and
    every run's leftovers (a killed run's half-written ``.partial`` model and dequantized ``base/`` copy); a model
    named in ``protect`` stays, with its job. Called by :func:`start` under the training lock, so no run is
    writing. Returns what was deleted."""
    root = rerankers_dir(settings)
    doomed = list(root.glob("*.partial"))  # a killed run's half-written model: never used
    runs = sorted((d for d in (root / "jobs").glob("*") if (d / "job.json").is_file()),
                  key=lambda d: (status(d).get("started_at") or 0, d.name), reverse=True)
    for n, job_dir in enumerate(runs):
        out = json.loads((job_dir / "job.json").read_text(encoding="utf-8")).get("out", "")
        if n < keep or out in protect:
            doomed.append(job_dir / "base")  # a killed run's dequantized copy (a finished run removed its own)
        else:
            doomed += [job_dir] + ([Path(out)] if out and Path(out).parent == root else [])
    removed = [path for path in doomed if path.exists()]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def _prepare(settings: Settings, collection: str, job_dir: Path, log: Callable[[str], None] | None) -> None:
    from training.feedback import prepare

    def note(message: str) -> None:
        _append_log(job_dir, message)
        _update(job_dir, message=message)
        if log:
            log(message)

    try:
        split = prepare(settings, collection, job_dir, note)
    except Exception as error:
        _update(job_dir, state="failed", message=f"preparation failed: {type(error).__name__}: {error}")
        raise
    _update(job_dir, split=split)


def _prepare_and_spawn(settings: Settings, collection: str, job_dir: Path, fd: int) -> None:
    try:
        _prepare(settings, collection, job_dir, None)
        with open(job_dir / "log.txt", "ab") as out:
            # Its own session: a signal to the app's process group (Ctrl-C on `make run`) does not reach it.
            process = subprocess.Popen([sys.executable, "-m", "training.feedback_job", str(job_dir)], cwd=REPO_ROOT,
                                       stdout=out, stderr=subprocess.STDOUT, pass_fds=(fd,), start_new_session=True)
        # Reaped here so it leaves no zombie behind; its lock is its own copy of the fd. (It writes its own pid
        # into the status: two writers of status.json could lose each other's updates.)
        threading.Thread(target=process.wait, daemon=True).start()
    except Exception:  # noqa: BLE001 - written to the status by _prepare; the thread just ends
        pass
    finally:
        os.close(fd)  # the child holds the lock through its inherited copy


def _append_log(job_dir: Path, message: str) -> None:
    with open(job_dir / "log.txt", "a", encoding="utf-8") as fh:
        fh.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")


def run(job_dir: Path, log: Callable[[str], None] | None = None) -> dict:
    """Train, export, score old vs new; each stage written to status.json as it goes."""
    from rag.rerank import CrossEncoderReranker, make_reranker
    from rag.settings import reranker_off
    from training.feedback import TRAINED_ON, compare, training_base
    from training.train import TrainConfig, train

    job = json.loads((job_dir / "job.json").read_text(encoding="utf-8"))
    settings = Settings(**{k: v for k, v in job["settings"].items() if v is not None})
    out, partial = Path(job["out"]), Path(job["out"] + ".partial")
    started = time.time()

    def progress(message: str) -> None:
        _append_log(job_dir, message)
        step = _STEP.search(message)
        if step:
            _update(job_dir, step=int(step.group(1)), total=int(step.group(2)), message=message)
        if log:
            log(message)

    try:
        _update(job_dir, state="training", message="loading the reranker to fine-tune", pid=os.getpid())
        base, how, trained_head = training_base(job["reranker"], job_dir)
        _update(job_dir, base=how)
        old = None if reranker_off(job["reranker"]) else make_reranker(job["reranker"],
                                                                       max_length=settings.rerank_max_length)
        max_length = settings.rerank_max_length or getattr(old, "max_length", None) or 256
        lr = 2e-5 if trained_head else 5e-5
        cfg = TrainConfig(datasets=[], mined=[str(job_dir / "train.json")], out=str(partial), base=base,
                          max_length=max_length, epochs=settings.feedback_epochs, lr=lr,
                          head_lr=lr if trained_head else 1e-3, negatives=NEGATIVES_PER_STEP, queries_per_step=4, threads=2,
                          device="cpu", time_budget_min=settings.feedback_train_minutes, log_every=1)
        summary = train(cfg, log=progress)
        _set_max_length(partial, max_length)
        shutil.copyfile(job_dir / TRAINED_ON, partial / TRAINED_ON)
        if settings.feedback_export_onnx:
            _update(job_dir, message="exporting to int8 ONNX, as the default ships")
            from training.export import export_onnx

            export_onnx(partial, partial)
        shutil.rmtree(job_dir / "base", ignore_errors=True)  # the dequantized copy: 130 MB no one reads again
        partial.rename(out)
        _update(job_dir, state="evaluating", reranker=str(out), train_seconds=summary["train_seconds"],
                steps=summary["steps"], message="scoring the current and the fine-tuned reranker")
        new = CrossEncoderReranker(str(out), max_length=max_length)
        result = compare(job_dir / "eval.json", old, new, settings, log=progress)
        return _update(job_dir, state="done", result=result, finished_at=time.time(),
                       seconds=round(time.time() - started, 1), message=result["verdict"])
    except Exception as error:
        _update(job_dir, state="failed", message=f"{type(error).__name__}: {error}")
        raise


def _set_max_length(folder: Path, max_length: int) -> None:
    """The fine-tune reads as many tokens as it was trained and scored with, wherever it is loaded."""
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    config["model_max_length"] = max_length
    path.write_text(json.dumps(config, indent=1), encoding="utf-8")


def status(job_dir: Path) -> dict:
    """The job's status.json; a job that says it runs while no process holds the lock has ``state: stopped``."""
    path = job_dir / "status.json"
    if not path.is_file():
        return {"state": "unknown", "job": job_dir.name}
    current = json.loads(path.read_text(encoding="utf-8"))
    current["job"] = job_dir.name
    if current.get("state") in RUNNING:
        if not _locked(job_dir.parent.parent):  # <data dir>/rerankers/jobs/<job>
            current["state"] = "stopped"
            current["message"] = ("stopped before it finished (the process ended); the reranker in use is "
                                  "unchanged")
    return current


def jobs(settings: Settings, collection: str | None = None) -> list[dict]:
    """Every job of the store (of one collection), newest first, each with its status."""
    root = rerankers_dir(settings) / "jobs"
    found = [status(d) for d in root.iterdir() if d.is_dir()] if root.is_dir() else []
    found = [s for s in found if collection is None or s.get("collection") == collection]
    return sorted(found, key=lambda s: s.get("started_at") or 0, reverse=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job_dir = Path(argv[0])
    try:
        run(job_dir)
    except Exception:  # noqa: BLE001 - the reason is in status.json and log.txt
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
