"""Checkpoints of a training run that outlives a session (``reranker train --checkpoint-dir D [--resume]``).

A checkpoint is one file, ``step-NNNNNNN.pt``: the weights training changes (the frozen word embeddings are the
base's, so they stay out: a few tens of MB, not the start's 470), AdamW's moments, the schedule, where the run
is in its data (epoch, that epoch's order, the next batch) and every random state a step draws from (the run's
``random.Random``, torch's), so a resumed run takes exactly the steps the uninterrupted one would have.

Written whole or not at all: into a hidden ``.step-NNNNNNN.pt.partial``, flushed to disk, then renamed (a rename
is atomic on POSIX), so a kill mid-write leaves the previous checkpoint the newest one; only the newest ``keep``
stay. ``progress.json`` beside them (renamed into place as well) says how far the run is.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

_NAME = re.compile(r"^step-(\d{7})\.pt$")
PROGRESS = "progress.json"


# What a resumed run must share with the run it resumes: its data, its start and the schedule's shape.
_SAME_RUN = ("mined", "datasets", "base", "seed", "epochs", "max_steps", "queries_per_step", "negatives", "loss",
             "max_queries", "include", "lr", "head_lr", "warmup", "freeze_embeddings")


@dataclass
class RunState:
    """Where a run is: steps and pairs done, the planned steps, the data position, the time trained so far."""

    total: int
    epochs: int
    step: int = 0
    pairs: int = 0
    epoch: int = 0
    index: int = 0  # the next batch's first position in ``order``
    order: list[int] | None = None  # this epoch's shuffled order (None: not drawn yet)
    losses: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    sessions: int = 1


def snapshot(run: RunState, cfg, model, opt, sched, rng) -> dict:
    """Everything :func:`restore` needs; the weights as they train (the frozen ones are the base's)."""
    import torch

    return {"run": asdict(run), "config": {k: getattr(cfg, k) for k in _SAME_RUN},
            "weights": {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad},
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "rng": {"python": rng.getstate(), "torch": torch.get_rng_state()}}


def restore(saved: dict, model, opt, sched, rng) -> RunState:
    import torch

    missing, unexpected = model.load_state_dict(saved["weights"], strict=False)
    if unexpected:
        raise ValueError(f"{saved['path']}: weights this model does not have: {unexpected[:3]}")
    opt.load_state_dict(saved["optimizer"])
    sched.load_state_dict(saved["scheduler"])
    rng.setstate(_as_tuples(saved["rng"]["python"]))
    torch.set_rng_state(saved["rng"]["torch"])
    run = RunState(**saved["run"])
    run.sessions += 1
    return run


def _as_tuples(value):  # random.Random.setstate wants the nested tuples getstate gave
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def same_run(saved: dict, cfg) -> list[str]:
    """The settings in which ``cfg`` differs from the run that wrote ``saved`` (empty: it may resume it)."""
    return [k for k in _SAME_RUN if saved["config"].get(k) != getattr(cfg, k)]


def checkpoints(directory: str | Path) -> list[Path]:
    """The whole checkpoints in ``directory``, oldest first (half-written ones are hidden ``.partial`` files)."""
    directory = Path(directory)
    found = [p for p in directory.glob("step-*.pt") if _NAME.match(p.name)] if directory.is_dir() else []
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def latest(directory: str | Path) -> Path | None:
    found = checkpoints(directory)
    return found[-1] if found else None


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(directory: str | Path, step: int, state: dict, keep: int = 3) -> Path:
    """Write ``state`` as step ``step``'s checkpoint, atomically; delete all but the newest ``keep``."""
    import torch

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"step-{step:07d}.pt"
    partial = directory / f".{final.name}.partial"
    with open(partial, "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(partial, final)
    _fsync_dir(directory)
    for old in checkpoints(directory)[:-max(1, keep)]:
        old.unlink(missing_ok=True)
    return final


def load(path: str | Path) -> dict:
    import torch

    # weights_only: tensors, numbers, strings, lists, dicts and tuples, nothing a file could run
    return torch.load(path, map_location="cpu", weights_only=True)


def write_progress(directory: str | Path, **fields) -> dict:
    """``progress.json`` in ``directory``, replaced whole (a reader never sees half of it)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fields["updated_at"] = time.time()
    partial = directory / f".{PROGRESS}.partial"
    partial.write_text(json.dumps(fields, indent=1) + "\n", encoding="utf-8")
    os.replace(partial, directory / PROGRESS)
    return fields


def read_progress(directory: str | Path) -> dict | None:
    path = Path(directory) / PROGRESS
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def describe(progress: dict) -> str:
    """One line: pairs done, speed, and what is left at that speed."""
    done, total = progress.get("pairs", 0), progress.get("pairs_planned") or 0
    speed = progress.get("pairs_per_s") or 0.0
    line = (f"{progress.get('state', '?')}: step {progress.get('step', 0)}/{progress.get('total_steps', '?')}, "
            f"{done:,} of ~{total:,} pairs, {speed:.2f} pairs/s, "
            f"{progress.get('train_seconds', 0) / 3600:.2f} h trained over {progress.get('sessions', 1)} session(s)")
    if speed and total > done:
        line += f", ~{(total - done) / speed / 3600:.1f} h left at this speed"
    if progress.get("checkpoint"):
        line += f"; last checkpoint {Path(progress['checkpoint']).name}"
    return line
