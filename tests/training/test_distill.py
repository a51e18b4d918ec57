"""Distillation (issue 25): the teacher's int8 file as torch weights, its labels per candidate, a student that
learns them, and that student exported and loaded through the app's reranker interface."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.training.test_training import TOPICS, tiny_config
from training.data import SourceInfo, TrainQuery
from training.mine import load_mined, save_mined

TEACHER = "cross-encoder/ms-marco-MiniLM-L-12-v2"
QUESTION = "Who invented the piano?"
TEXTS = [doc for doc, _ in TOPICS.values()]


@pytest.fixture(scope="module")
def teacher_torch(tmp_path_factory) -> Path:
    from rag.rerank import resolve_reranker
    from training.dequantize import torch_folder_from_onnx

    path, _ = resolve_reranker(TEACHER)
    return torch_folder_from_onnx(path, tmp_path_factory.mktemp("teacher") / "l12")


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    from training.teacher import label_mined

    root = tmp_path_factory.mktemp("mined")
    queries = [TrainQuery("tiny", q, [doc], [t for t in TEXTS if t != doc][:5]) for doc, q in TOPICS.values()]
    save_mined(root / "mined.json", queries, [SourceInfo("tiny", "tiny", "beir")], {"retrieval": "hybrid"})
    label_mined(root / "mined.json", root / "labelled.json", f"{TEACHER}#64", negatives=4, log=lambda m: None)
    return root / "labelled.json"


def test_the_int8_teacher_as_torch_weights_ranks_as_the_onnx_file_does(teacher_torch: Path) -> None:
    from rag.rerank import CrossEncoderReranker

    onnx = CrossEncoderReranker(TEACHER)
    torch_ = CrossEncoderReranker(str(teacher_torch), backend="torch")
    assert (onnx.backend, torch_.backend) == ("onnx", "torch")
    a, b = onnx.logits(QUESTION, TEXTS), torch_.logits(QUESTION, TEXTS)
    # int8 ONNX also quantizes activations at run time: close, not equal; the order is the same
    assert max(abs(x - y) for x, y in zip(a, b)) < 1.0
    assert sorted(range(len(a)), key=a.__getitem__) == sorted(range(len(b)), key=b.__getitem__)
    assert max(range(len(a)), key=a.__getitem__) == TEXTS.index(TOPICS["piano"][0])


def test_every_other_layer_start_keeps_six_of_twelve_layers(tmp_path: Path) -> None:
    from sentence_transformers import CrossEncoder

    from training.distill import student_start

    out = student_start(TEACHER, tmp_path / "start")
    config = json.loads((out / "config.json").read_text())
    assert config["num_hidden_layers"] == 6
    scores = CrossEncoder(str(out)).predict([(QUESTION, t) for t in TEXTS], show_progress_bar=False)
    assert len(scores) == len(TEXTS) and len(set(map(float, scores))) > 1  # a head that reads its input


def test_labelling_records_the_teachers_logit_for_every_candidate(labelled: Path) -> None:
    from rag.rerank import reranker_from_spec

    queries, _, first_stage = load_mined(labelled)
    assert first_stage["retrieval"] == "hybrid" and first_stage["teacher"]["name"] == TEACHER
    assert first_stage["teacher"]["pairs"] == len(TOPICS) * 5
    teacher = reranker_from_spec(f"{TEACHER}#64")
    for q in queries:
        assert len(q.negatives) == 4 and len(q.negative_scores) == 4 and len(q.positive_scores) == 1
        assert q.positive_scores + q.negative_scores == pytest.approx(
            teacher.logits(q.query, q.positives + q.negatives), abs=1e-5)
        assert q.positive_scores[0] > max(q.negative_scores)  # these questions are easy for the teacher


def test_distil_loss_is_zero_only_when_the_student_orders_as_the_teacher() -> None:
    import torch

    from training.distill import distil_loss

    teacher = torch.tensor([[4.0, 1.0, -2.0, 0.0]])
    mask = torch.tensor([[True, True, True, False]])  # a shorter list: the last column is padding
    same = distil_loss(teacher + 3.0, teacher, mask)  # a constant shift changes no softmax
    flipped = distil_loss(torch.tensor([[-2.0, 1.0, 4.0, 99.0]]), teacher, mask)
    assert float(same) == pytest.approx(0.0, abs=1e-6)
    assert float(flipped) > 1.0
    assert float(distil_loss(teacher, teacher, mask, gold_weight=1.0)) > 0.0  # the gold term adds its CE
    # a row no teacher scored (a Chinese question) learns its gold passage: the listwise cross-entropy
    student = torch.tensor([[1.0, 2.0, 0.5, 0.0]])
    unscored = distil_loss(student, torch.zeros_like(student), mask, labelled=torch.tensor([False]))
    expected = torch.nn.functional.cross_entropy(student[:, :3], torch.tensor([0]))
    assert float(unscored) == pytest.approx(float(expected), abs=1e-5)


def test_the_score_term_sees_the_scale_the_kl_term_ignores() -> None:
    """The confident blend reads sigmoid(best logit): --score-weight teaches the teacher's level, not only its order."""
    import torch

    from training.distill import distil_loss

    teacher = torch.tensor([[4.0, 1.0, -2.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    scored = torch.tensor([True, False])  # the second row: no teacher scores (its zeros are no target)
    shifted = teacher.clone()
    shifted[0] += 3.0  # ordered as the teacher, 3 logits higher
    kl_only = distil_loss(shifted, teacher, mask, labelled=scored)
    with_scale = distil_loss(shifted, teacher, mask, labelled=scored, score_weight=0.5)
    # three scored candidates, each 3 off: 0.5 x 9; the padding and the unscored row add nothing
    assert float(with_scale - kl_only) == pytest.approx(0.5 * 9.0, abs=1e-4)
    assert float(distil_loss(teacher, teacher, mask, labelled=scored, score_weight=0.5)) == \
        pytest.approx(float(distil_loss(teacher, teacher, mask, labelled=scored)), abs=1e-6)


def test_a_start_is_rescaled_to_its_teachers_logits_without_changing_its_order() -> None:
    import torch

    from training.distill import match_teacher_scale

    torch.manual_seed(0)
    head, features = torch.nn.Linear(8, 1), torch.randn(40, 8)
    before = head(features).detach().flatten()
    a, c = match_teacher_scale(head, before, 3.0 * before - 2.0)
    assert (a, c) == (pytest.approx(3.0), pytest.approx(-2.0))
    assert head(features).detach().flatten() == pytest.approx((3.0 * before - 2.0).tolist(), abs=1e-4)
    # a teacher that disagrees on every pair: the start keeps its own order, on the teacher's spread
    flipped = torch.nn.Linear(8, 1)
    mine = flipped(features).detach().flatten()
    a, _ = match_teacher_scale(flipped, mine, -5.0 * mine)
    assert a > 0 and torch.equal(flipped(features).detach().flatten().argsort(), mine.argsort())


def test_a_distilled_student_moves_toward_its_teacher_and_loads_as_int8(tmp_path: Path, labelled: Path) -> None:
    import torch

    from rag.rerank import CrossEncoderReranker
    from training.distill import distil_loss, student_start
    from training.export import export_onnx
    from training.train import train

    start = student_start(TEACHER, tmp_path / "start")
    queries, _, _ = load_mined(labelled)

    def gap(folder: Path) -> float:  # the distillation loss over the training questions
        model = CrossEncoderReranker(str(folder), backend="torch", max_length=64)
        total = 0.0
        for q in queries:
            s = torch.tensor([model.logits(q.query, q.positives + q.negatives)])
            t = torch.tensor([q.positive_scores + q.negative_scores])
            total += float(distil_loss(s, t, torch.ones_like(s, dtype=torch.bool)))
        return total / len(queries)

    summary = train(tiny_config(None, tmp_path / "student", datasets=[], mined=[str(labelled)], base=str(start),
                                loss="distil", max_steps=6, queries_per_step=4, negatives=4, max_length=64,
                                lr=1e-4, head_lr=1e-4, warmup=0.0, score_weight=0.05), log=lambda m: None)
    assert summary["config"]["loss"] == "distil" and summary["mined_by"][0]["teacher"]["name"] == TEACHER
    assert gap(tmp_path / "student") < gap(start)
    export_onnx(tmp_path / "student", tmp_path / "shipped")
    student = CrossEncoderReranker(str(tmp_path / "shipped"))
    assert student.backend == "onnx"
    # taught the teacher's logits themselves (--score-weight), it reads them through the teacher's calibration
    from rag.catalog import CATALOG

    teacher_calibration = next(i.calibration for i in CATALOG if i.name == TEACHER)
    assert student.calibration == pytest.approx(teacher_calibration) and teacher_calibration != (1.0, 0.0)
    logits = student.logits(QUESTION, TEXTS)
    assert max(range(len(logits)), key=logits.__getitem__) == TEXTS.index(TOPICS["piano"][0])
    card = (tmp_path / "student" / "README.md").read_text()
    assert "distil" in card.lower()
    # a prepared start keeps its head: the card must not call it new, nor name all-MiniLM-L6-v2 its base
    assert "a prepared start" in card and "head is new" not in card and "base_model:" not in card
    # our own int8 export reads back as torch weights too (a shipped student is a start for the next run)
    from training.dequantize import torch_folder_from_onnx

    again = CrossEncoderReranker(str(torch_folder_from_onnx(tmp_path / "shipped", tmp_path / "again")), backend="torch")
    back = again.logits(QUESTION, TEXTS)  # int8 activations err in proportion to the logits' scale (the teacher's)
    assert max(range(len(back)), key=back.__getitem__) == max(range(len(logits)), key=logits.__getitem__)
    assert float(torch.corrcoef(torch.tensor([back, logits]))[0, 1]) > 0.98


def test_distil_training_refuses_an_unlabelled_file(tmp_path: Path) -> None:
    from training.train import train

    queries = [TrainQuery("tiny", q, [doc], [t for t in TEXTS if t != doc][:3]) for doc, q in TOPICS.values()]
    save_mined(tmp_path / "mined.json", queries, [SourceInfo("tiny", "tiny", "beir")], {"retrieval": "hybrid"})
    with pytest.raises(ValueError, match="reranker label"):
        train(tiny_config(None, tmp_path / "s", datasets=[], mined=[str(tmp_path / "mined.json")], loss="distil",
                          max_steps=1), log=lambda m: None)
