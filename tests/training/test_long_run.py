"""A training run that outlives a session (issue 38): checkpoints written whole or not at all, a run killed with
SIGKILL resumed to the very model the uninterrupted run makes, the frozen word embeddings, and the pairs of
each question language cut at their own length."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.training.test_training import TOPICS, tiny_config
from training import checkpoint
from training.data import SourceInfo, TrainQuery
from training.mine import save_mined

STEPS = 12


def _mined(tmp: Path) -> Path:
    texts = [doc for doc, _ in TOPICS.values()]
    queries = [TrainQuery("tiny", q, [doc], [t for t in texts if t != doc][:4]) for doc, q in TOPICS.values()]
    save_mined(tmp / "mined.json", queries, [SourceInfo("tiny", "tiny", "beir")], {"retrieval": "hybrid"})
    return tmp / "mined.json"


def _train_args(mined: Path, out: Path) -> list[str]:
    return ["--mined", str(mined), "--out", str(out), "--max-steps", str(STEPS), "--epochs", "10",
            "--queries-per-step", "2", "--negatives", "3", "--max-length", "48", "--threads", "1", "--seed", "3",
            "--log-every", "1", "--checkpoint-every", "0", "--keep-checkpoints", "2"]


def _wait(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _long_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training.long_run", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def _predict(folder: Path) -> list[float]:
    from tests.training.test_training import PAIRS, predict

    return predict(folder, PAIRS + [(q, d) for d, q in TOPICS.values()])


def test_a_run_killed_with_sigkill_resumes_to_the_model_the_uninterrupted_run_makes(tmp_path: Path) -> None:
    from training.cli import add_train_arguments, config_from_args
    from training.long_run import snapshot, status
    from training.train import train

    mined, run_dir = _mined(tmp_path), tmp_path / "run"
    started = _long_run("start", str(run_dir), "--", *_train_args(mined, tmp_path / "resumed"))
    assert started.returncode == 0, started.stderr
    progress = _wait(lambda: (p := status(run_dir)).get("state") == "running" and p.get("step", 0) >= 3 and p,
                     180, "three steps")
    os.kill(progress["pid"], signal.SIGKILL)  # mid-run: its steps are checkpointed one by one
    _wait(lambda: status(run_dir)["state"] == "stopped", 30, "the lock to go with the process")
    killed_at = status(run_dir)["step"]
    assert killed_at < STEPS and len(checkpoint.checkpoints(run_dir / "checkpoints")) <= 2  # only the newest kept
    resumed = _long_run("start", str(run_dir), "--threads", "1")  # no run arguments: resumes with its own
    assert resumed.returncode == 0, resumed.stderr
    done = _wait(lambda: (p := status(run_dir))["state"] in ("done", "failed", "stopped") and p, 180, "the run")
    assert done["state"] == "done", (run_dir / "log.txt").read_text()[-2000:]
    log = (run_dir / "log.txt").read_text()
    assert "resumed from" in log and done["sessions"] == 2 and done["step"] == STEPS
    summary = json.loads((tmp_path / "resumed" / "training_summary.json").read_text())
    assert summary["steps"] == STEPS and summary["pairs"] == STEPS * 2 * 4
    line = _long_run("status", str(run_dir)).stdout
    snapshot(run_dir, tmp_path / "snapshot")  # the newest checkpoint as a model folder: here, the last step's
    assert _predict(tmp_path / "snapshot") == _predict(tmp_path / "resumed")
    assert f"step {STEPS}/{STEPS}" in line and "pairs/s" in line and "2 session(s)" in line

    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    straight = config_from_args(parser.parse_args(_train_args(mined, tmp_path / "straight")))
    straight.checkpoint_dir = None
    train(straight, log=lambda m: None)
    assert _predict(tmp_path / "resumed") == _predict(tmp_path / "straight")  # the same steps, data and draws


def test_a_run_of_other_settings_does_not_resume_from_a_checkpoint(tmp_path: Path) -> None:
    from training.train import train

    mined = _mined(tmp_path)
    cfg = tiny_config(None, tmp_path / "a", datasets=[], mined=[str(mined)], max_steps=2,
                      checkpoint_dir=str(tmp_path / "ck"), checkpoint_every_min=0)
    assert train(cfg, log=lambda m: None)["steps"] == 2 and checkpoint.latest(tmp_path / "ck") is not None
    other = tiny_config(None, tmp_path / "b", datasets=[], mined=[str(mined)], max_steps=2, seed=4,
                        checkpoint_dir=str(tmp_path / "ck"), resume=True)
    with pytest.raises(ValueError, match="differs in seed"):
        train(other, log=lambda m: None)
    with pytest.raises(ValueError, match="need --checkpoint-dir"):
        train(tiny_config(None, tmp_path / "c", datasets=[], mined=[str(mined)], resume=True), log=lambda m: None)


_KILLED_WHILE_SAVING = """
import os, signal, sys
import torch
from training import checkpoint
real_save = torch.save
def half_then_killed(obj, fh):
    fh.write(b"PK\\x03\\x04 half of a checkpoint")
    fh.flush()
    os.kill(os.getpid(), signal.SIGKILL)
torch.save = half_then_killed
checkpoint.save(sys.argv[1], 3, {"step": torch.tensor(3)})
"""


def test_a_kill_while_a_checkpoint_is_written_leaves_the_previous_one_the_newest(tmp_path: Path) -> None:
    import torch

    for step in (1, 2):
        checkpoint.save(tmp_path, step, {"step": torch.tensor(step)}, keep=3)
    killed = subprocess.run([sys.executable, "-c", _KILLED_WHILE_SAVING, str(tmp_path)], cwd=REPO,
                            capture_output=True, timeout=60)
    assert killed.returncode == -signal.SIGKILL
    assert list(tmp_path.glob(".step-0000003.pt.partial"))  # the half-written file is there, under another name
    assert checkpoint.latest(tmp_path).name == "step-0000002.pt"
    assert int(checkpoint.load(checkpoint.latest(tmp_path))["step"]) == 2
    for step in (3, 4, 5):
        checkpoint.save(tmp_path, step, {"step": torch.tensor(step)}, keep=2)
    assert [p.name for p in checkpoint.checkpoints(tmp_path)] == ["step-0000004.pt", "step-0000005.pt"]


def test_training_leaves_the_word_embeddings_as_the_base_had_them(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from rag.embedders.models import packaged_minilm_path
    from training.train import train

    mined = _mined(tmp_path)
    train(tiny_config(None, tmp_path / "m", datasets=[], mined=[str(mined)], max_steps=2,
                      checkpoint_dir=str(tmp_path / "ck")), log=lambda m: None)
    base = load_file(str(Path(packaged_minilm_path()) / "model.safetensors"))
    trained = load_file(str(tmp_path / "m" / "model.safetensors"))

    def named(state: dict, suffix: str):
        return next(v for k, v in state.items() if k.endswith(suffix))

    emb = "embeddings.word_embeddings.weight"
    assert named(trained, emb).equal(named(base, emb))
    query = "layer.0.attention.self.query.weight"
    assert not named(trained, query).equal(named(base, query))
    saved = checkpoint.load(checkpoint.latest(tmp_path / "ck"))
    assert not any(name.endswith(emb) for name in saved["weights"])  # neither stored nor in AdamW's state
    assert len(saved["optimizer"]["state"]) == len(saved["weights"])


def test_each_question_language_is_cut_at_its_own_length_and_keeps_its_pair_order() -> None:
    import torch
    from sentence_transformers import CrossEncoder

    from rag.embedders.models import packaged_minilm_path
    from training.steps import pair_logits

    ce = CrossEncoder(packaged_minilm_path(), num_labels=1, max_length=40, device="cpu")
    model, tok = ce.model.eval(), ce.tokenizer
    long_doc = " ".join(doc for doc, _ in TOPICS.values())
    pairs = [("Who invented the piano?", long_doc), ("野生大熊猫有多少只？", long_doc + " 大熊猫"),
             ("What causes tides?", TOPICS["tides"][0]), ("长城是为了什么修建的？", TOPICS["opera"][0])]
    cfg = tiny_config(None, Path("unused"), max_length=40, max_length_by_language={"zh": 16})
    with torch.no_grad():
        together = pair_logits(model, tok, [q for q, _ in pairs], [d for _, d in pairs], cfg, "cpu")
        alone = [float(model(**tok([q], [d], truncation="only_second", max_length=16 if "？" in q else 40,
                                   return_tensors="pt")).logits) for q, d in pairs]
        at_the_default = float(model(**tok([pairs[1][0]], [pairs[1][1]], truncation="only_second", max_length=40,
                                           return_tensors="pt")).logits)
    assert together.tolist() == pytest.approx(alone, abs=1e-4)
    assert alone[1] != pytest.approx(at_the_default, abs=1e-4)  # the Chinese pair was cut at 16, not 40
