"""A training run that lives through sessions: in the background, checkpointed, resumed where it stopped.

    python -m training.long_run start RUN_DIR [--stop-after MIN] [--threads N] -- <reranker train arguments>
    python -m training.long_run status RUN_DIR                                # pairs done, pairs/s, what is left
    python -m training.long_run stop RUN_DIR                                  # kill it; start resumes it
    python -m training.long_run snapshot RUN_DIR OUT                          # newest checkpoint -> a model

``start`` writes the arguments (relative paths read from the repository root) to ``RUN_DIR/args.json``
(``--checkpoint-dir RUN_DIR/checkpoints --resume`` added) and spawns ``python -m training.long_run run RUN_DIR``
in a session of its own (a signal to the shell that started it does not reach it), its output in
``RUN_DIR/log.txt``. ``start`` on a folder that has ``args.json`` resumes that run with its own arguments, from
its newest checkpoint (training.checkpoint): two or three sessions add up to one run. This start's own options,
not stored with the run: ``--stop-after MIN`` has it checkpoint and stop after MIN minutes, inside a session's
time; ``--threads N`` fits it to how busy the machine is now (on cores shared by many, one thread waits less for
the other). A run killed at any moment (kill -9 included) loses at most the steps since its last checkpoint.

The job pattern is the feedback fine-tune's (training.feedback_job): an flock held by the training process,
so a second start is refused while one runs and the kernel releases it when the process dies, however it
dies. Its runner itself does not fit: it prepares a collection's feedback and scores old against new.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rag.settings import REPO_ROOT
from training import checkpoint
from training.feedback_job import _locked, _try_lock

ARGS = "args.json"
SESSION = "session.json"  # this start's own options, not the run's
SESSION_OPTIONS = ("--stop-after", "--threads")


class RunBusy(RuntimeError):
    """The run's training process is alive."""


def _train_args(run_dir: Path, args: list[str]) -> list[str]:
    return [*args, "--checkpoint-dir", str(run_dir / "checkpoints"), "--resume"]


def start(run_dir: str | Path, args: list[str] | None = None, session: list[str] | None = None) -> dict:
    """Start the run in ``run_dir`` (or resume it: ``args`` None or its own); returns its pid."""
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    saved = run_dir / ARGS
    if saved.is_file():
        stored = json.loads(saved.read_text(encoding="utf-8"))["args"]
        if args and args != stored:
            raise ValueError(f"{run_dir} is a run with other arguments ({' '.join(stored)}): resume it with "
                             "no arguments, or start another folder")
        args = stored
    elif not args:
        raise ValueError(f"{run_dir} holds no run yet: give the `reranker train` arguments after --")
    fd = _try_lock(run_dir)
    if fd is None:
        raise RunBusy(f"{run_dir}: its training is running (status: python -m training.long_run status {run_dir})")
    try:
        saved.write_text(json.dumps({"args": args}, indent=1) + "\n", encoding="utf-8")
        (run_dir / SESSION).write_text(json.dumps({"args": session or []}) + "\n", encoding="utf-8")
        with open(run_dir / "log.txt", "ab") as out:
            # Its own session: Ctrl-C in the starting shell, or the shell's end, does not reach the run.
            process = subprocess.Popen([sys.executable, "-m", "training.long_run", "run", str(run_dir)],
                                       cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        os.close(fd)  # the child takes the lock itself, first thing
    deadline = time.time() + 120  # until it holds it, status could not tell a starting run from a dead one
    while not _locked(run_dir) and process.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    return {"pid": process.pid, "run_dir": str(run_dir), "exited": process.poll()}


def run(run_dir: Path) -> int:
    """The training process: holds the lock, trains with the stored arguments, resuming."""
    fd, deadline = _try_lock(run_dir), time.time() + 10
    while fd is None and time.time() < deadline:  # a status check holds the lock for an instant to test it
        time.sleep(0.05)
        fd = _try_lock(run_dir)
    if fd is None:
        print(f"{run_dir}: another process trains this run", file=sys.stderr)
        return 2
    from training.train import train

    session = run_dir / SESSION
    cfg = _config(run_dir, json.loads(session.read_text(encoding="utf-8"))["args"] if session.is_file() else [])

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    try:
        summary = train(cfg, log=log)
    except Exception as error:  # noqa: BLE001 - the reason goes to the progress file and the log
        progress = checkpoint.read_progress(cfg.checkpoint_dir) or {}
        checkpoint.write_progress(cfg.checkpoint_dir, **{**progress, "state": "failed",
                                                        "message": f"{type(error).__name__}: {error}"})
        raise
    finally:
        os.close(fd)
    log("finished" if summary.get("finished") else "stopped at a checkpoint: start resumes it")
    return 0


def _config(run_dir: Path, extra: list[str]):
    from training.cli import add_train_arguments, config_from_args

    parser = argparse.ArgumentParser(prog="training.long_run run")
    add_train_arguments(parser)
    stored = json.loads((run_dir / ARGS).read_text(encoding="utf-8"))["args"]
    return config_from_args(parser.parse_args(_train_args(run_dir, stored + extra)))


def snapshot(run_dir: str | Path, out: str | Path) -> Path:
    """The newest checkpoint as a model folder (the start with its trained weights, ``reranker.json`` declaring
    the run's languages), to score on the dev suite while the run goes on."""
    from sentence_transformers import CrossEncoder

    from rag.catalog import FOLDER_INFO
    from rag.embedders.models import packaged_minilm_path

    run_dir = Path(run_dir)
    cfg = _config(run_dir, [])
    path = checkpoint.latest(cfg.checkpoint_dir)
    if path is None:
        raise ValueError(f"{run_dir}: no checkpoint yet")
    saved = checkpoint.load(path)
    base = cfg.base or packaged_minilm_path()  # train()'s default start
    ce = CrossEncoder(base, num_labels=1, max_length=cfg.max_length, device="cpu")
    missing, unexpected = ce.model.load_state_dict(saved["weights"], strict=False)
    if unexpected:
        raise ValueError(f"{path} does not fit {base}: {unexpected[:3]}")
    out = Path(out)
    ce.save_pretrained(str(out))
    run = saved["run"]
    (out / FOLDER_INFO).write_text(json.dumps({"languages": cfg.languages, "max_length": cfg.max_length,
                                               "license": "see the run's start", "checkpoint": path.name,
                                               "step": run["step"], "pairs": run["pairs"]}, indent=2) + "\n")
    return out


def status(run_dir: str | Path) -> dict:
    """The progress file, its state ``stopped`` when it says running but no process holds the run."""
    run_dir = Path(run_dir)
    progress = checkpoint.read_progress(run_dir / "checkpoints") or {"state": "not started"}
    if progress.get("state") in ("starting", "running", "trained") and not _locked(run_dir):
        progress["state"] = "stopped"
    return progress


def stop(run_dir: str | Path) -> bool:
    """Kill the run's training process (it resumes from its newest checkpoint); False when none runs."""
    progress = status(run_dir)
    if progress.get("state") not in ("starting", "running", "trained") or not progress.get("pid"):
        return False
    os.kill(int(progress["pid"]), signal.SIGTERM)
    return True


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[0] not in ("start", "run", "status", "stop", "snapshot"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    verb, run_dir, rest = argv[0], Path(argv[1]), argv[2:]
    session = []
    while rest[:1] and rest[0] in SESSION_OPTIONS and len(rest) > 1:  # given after the run's: they win
        session, rest = session + rest[:2], rest[2:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    if verb == "run":
        return run(run_dir.resolve())
    if verb == "start":
        try:
            started = start(run_dir, rest or None, session)
        except (ValueError, RunBusy) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        if started["exited"] is not None:
            print(f"error: the training process ended at once (exit {started['exited']}): see {run_dir / 'log.txt'}",
                  file=sys.stderr)
            return 1
        print(f"training in the background (pid {started['pid']}); log {run_dir / 'log.txt'}; "
              f"progress: python -m training.long_run status {run_dir}")
        return 0
    if verb == "snapshot":
        try:
            print(f"wrote {snapshot(run_dir, rest[0] if rest else run_dir / 'snapshot')}")
        except (ValueError, FileNotFoundError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        return 0
    if verb == "stop":
        print("stopped; `start` resumes it" if stop(run_dir) else "no training process runs")
        return 0
    print(checkpoint.describe(status(run_dir)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
