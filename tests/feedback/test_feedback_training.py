"""From marks to a reranker: the split, the minimum, a real fine-tune (the default reranker's int8 weights
dequantized, trained a few steps, exported to int8 ONNX) that loads through the same interface, the comparison,
the switch and back, one training at a time, and a training killed with SIGKILL leaving the reranker in use."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from rag.feedback import FeedbackStore, collection_reranker
from rag.pipeline import RagPipeline
from rag.rerank import CrossEncoderReranker, load_reranker
from rag.settings import Settings
from tests.feedback.conftest import QUESTIONS, mark_questions, small_training
from training.feedback import NotEnoughFeedback, question_hash, split_questions
from training.feedback_job import (TrainingBusy, _try_lock, models_in_use, prune_runs, rerankers_dir, start, status,
                                   training_running)


def test_the_split_is_by_question_stable_and_holds_some_out() -> None:
    questions = [f"question {i}?" for i in range(40)]
    train, held = split_questions(questions, 0.25)
    assert len(held) == 10 and not set(train) & set(held) and set(train) | set(held) == set(questions)
    assert split_questions(list(reversed(questions)), 0.25) == (train, held)  # order of marking does not matter
    # a question added later never moves a held-out one into training
    assert set(held) <= set(split_questions(questions + ["a late question?"], 0.25)[1])
    # questions the reranker in use was fine-tuned on are never held out (they would flatter it)
    again_train, again_held = split_questions(questions, 0.25, {question_hash(q) for q in held})
    assert len(again_held) == 10 and not set(again_held) & set(held) and set(held) <= set(again_train)
    assert split_questions(["a?", "b?"], 0.9)[0]  # always something to train on


def test_training_is_offered_only_from_enough_marked_questions(store_copy: Path, dev_set: Path) -> None:
    settings = small_training(store_copy, dev_set, feedback_min_questions=5)
    mark_questions(settings, QUESTIONS[:4])
    with pytest.raises(NotEnoughFeedback, match="4 question.*needs 5"):
        start(settings, "default", background=False)
    assert not (rerankers_dir(settings) / "jobs").exists()


def test_a_fine_tune_loads_through_the_same_interface_and_is_compared(trained) -> None:
    settings, job = trained
    done = status(job)
    assert done["state"] == "done", done.get("message")
    folder = Path(done["reranker"])
    assert folder.parent == rerankers_dir(settings) and re.fullmatch(r"default-\d{8}-\d{6}", folder.name)
    assert not list(folder.parent.glob("*.partial"))
    assert "dequantized" in done["base"] and done["steps"] >= 1
    reranker = load_reranker(str(folder))
    assert isinstance(reranker, CrossEncoderReranker) and reranker.backend == "onnx"  # int8, as the default
    assert reranker.max_length == 256  # reads what the default reads
    scores = reranker.logits(QUESTIONS[0], ["The battery charges fully in about 4.5 hours.", "Returns: 30 days."])
    assert len(scores) == 2 and scores[0] > scores[1]
    rows = done["result"]["rows"]
    assert [r["set"] for r in rows] == ["held-out feedback", "dev set dev"]
    assert all(0.0 <= r[k] <= 1.0 for r in rows for k in ("first stage", "current", "fine-tuned"))
    assert done["result"]["split"]["held_out"] == 3 and done["result"]["split"]["train"] == 3
    assert collection_reranker(settings, "default") is None  # nothing switches by itself


def test_the_switch_to_the_fine_tune_and_back(trained) -> None:
    settings, job = trained
    folder = status(job)["reranker"]
    store, pipeline = FeedbackStore(settings), RagPipeline(settings)
    before = pipeline.ask(QUESTIONS[0], generate=False).reranker
    store.switch("default", folder, previous=None)
    try:
        assert pipeline.ask(QUESTIONS[0], generate=False).reranker == folder
    finally:
        store.switch_back("default")
    assert pipeline.ask(QUESTIONS[0], generate=False).reranker == before


def test_one_training_at_a_time_per_store(store_copy: Path, dev_set: Path, tmp_path: Path) -> None:
    settings = small_training(store_copy, dev_set)
    mark_questions(settings, QUESTIONS[:4])
    held = _try_lock(rerankers_dir(settings))  # as a running training holds it
    try:
        assert training_running(settings)
        with pytest.raises(TrainingBusy):
            start(settings, "default", background=False)
    finally:
        os.close(held)
    assert not training_running(settings)


def test_a_killed_training_leaves_the_reranker_in_use(store_copy: Path, dev_set: Path) -> None:
    settings = small_training(store_copy, dev_set, feedback_train_minutes=5.0, feedback_epochs=20)
    mark_questions(settings, QUESTIONS[:4])
    pipeline = RagPipeline(settings)
    before = pipeline.ask(QUESTIONS[0], generate=False).reranker
    job = start(settings, "default", background=True)
    deadline = time.time() + 300
    while not ((now := status(job)).get("state") == "training" and now.get("pid")):
        assert now.get("state") in ("preparing", "training"), now
        assert time.time() < deadline, now
        time.sleep(0.5)
    time.sleep(3)  # into the model's loading or its first steps
    os.kill(now["pid"], signal.SIGKILL)
    while training_running(settings):
        assert time.time() < deadline
        time.sleep(0.2)
    stopped = status(job)
    assert stopped["state"] == "stopped" and "unchanged" in stopped["message"]
    assert not [p for p in rerankers_dir(settings).iterdir() if p.name.startswith("default-") and not p.name.endswith(".partial")]
    assert collection_reranker(settings, "default") is None
    assert pipeline.ask(QUESTIONS[0], generate=False).reranker == before
    # what the killed run left (a half-written model, the dequantized base) goes with the next run's pruning
    left = [p for p in (*rerankers_dir(settings).glob("*.partial"), job / "base") if p.exists()]
    assert set(prune_runs(settings, keep=settings.feedback_keep_runs, protect=models_in_use(settings))) == set(left)
    assert not list(rerankers_dir(settings).glob("*.partial")) and not (job / "base").exists()
    assert status(job)["state"] == "stopped"  # its record stays, among the last few


def test_the_command_line_refuses_too_little_feedback_in_plain_words(store_copy: Path) -> None:
    import subprocess
    import sys

    mark_questions(Settings(data_dir=store_copy), QUESTIONS[:2])
    cli = str(Path(sys.executable).parent / "rerank-rag")
    done = subprocess.run([cli, "reranker", "train", "--data-dir", str(store_copy), "--collection", "default",
                           "--from-feedback"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.startswith("error: 2 question(s) of 'default'") and "RAG_FEEDBACK_MIN_QUESTIONS" in done.stderr


def test_only_the_last_runs_and_the_ones_in_use_stay_on_disk(store_copy: Path) -> None:
    settings = Settings(data_dir=store_copy)
    root = rerankers_dir(settings)
    runs = [f"default-2026010{i}-000000" for i in range(5)]  # oldest first, as start() names and dates them
    for n, name in enumerate(runs):
        (root / "jobs" / name / "base").mkdir(parents=True)  # the dequantized copy a killed run leaves
        (root / "jobs" / name / "job.json").write_text(json.dumps({"out": str(root / name)}))
        (root / "jobs" / name / "status.json").write_text(json.dumps({"state": "done", "started_at": n}))
        if n != 4:  # the newest was killed before its model was whole
            (root / name).mkdir()
            (root / name / "model.safetensors").write_bytes(b"weights")
    (root / f"{runs[4]}.partial").mkdir()
    FeedbackStore(settings).switch("default", str(root / runs[1]), previous=str(root / runs[0]))
    assert models_in_use(settings) == {str(root / runs[0]), str(root / runs[1])}

    removed = prune_runs(settings, keep=2, protect=models_in_use(settings))
    assert root / runs[2] in removed and root / "jobs" / runs[2] in removed
    assert not (root / runs[2]).exists() and not (root / "jobs" / runs[2]).exists()  # older than the last two
    assert all((root / name).is_dir() for name in runs[:2] + runs[3:4])  # in use, one click back, the last two
    assert all((root / "jobs" / name / "job.json").is_file() for name in runs[:2] + runs[3:])
    assert not list(root.glob("*.partial")) and not list((root / "jobs").glob("*/base"))  # leftovers, all gone
    assert prune_runs(settings, keep=2, protect=models_in_use(settings)) == []  # nothing more to do
