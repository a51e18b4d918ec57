"""The student/teacher verdict: a share of the teacher's gain, with an interval that knows how few questions a set has."""

from __future__ import annotations

import random

import pytest

from evaluation.gain_share import gain_share


def _set(n: int, teacher_lift: float, student_lift: float, seed: int) -> tuple[list[float], ...]:
    rng = random.Random(seed)
    first = [rng.choice([0.0, 0.5, 1.0]) for _ in range(n)]
    # a question moves to rank 1 with probability `lift`: the gain is noisy per question, as on real sets
    teacher = [1.0 if rng.random() < teacher_lift else f for f in first]
    student = [1.0 if rng.random() < student_lift else f for f in first]
    return first, teacher, student


def test_a_copy_of_the_teacher_keeps_all_of_its_gain_and_no_gap() -> None:
    first, teacher, _ = _set(100, 0.3, 0.0, seed=1)
    got = gain_share({"a": (first, teacher, teacher), "b": (first, teacher, teacher)})
    assert got.share == pytest.approx(1.0)
    assert got.share_low == pytest.approx(1.0) and got.share_high == pytest.approx(1.0)
    assert got.gap_low == got.gap_high == 0.0


def test_the_interval_holds_the_true_share_and_narrows_with_more_questions() -> None:
    small = gain_share({f"s{i}": _set(40, 0.4, 0.2, seed=i) for i in range(4)}, seed=3)
    large = gain_share({f"s{i}": _set(4000, 0.4, 0.2, seed=i) for i in range(4)}, seed=3)
    assert large.share_low < 0.5 < large.share_high  # a student lifting half as many questions keeps ~half
    assert large.share_high - large.share_low < (small.share_high - small.share_low) / 4
    assert large.gap_high < 0  # with 16k questions, the gap is certain
    assert small.share_low <= small.share <= small.share_high


def test_every_set_weighs_the_same_whatever_its_size() -> None:
    # the student keeps all of the gain on a 20-question set and none on a 2000-question one: half, not ~1 %
    tiny = _set(20, 0.5, 0.0, seed=5)
    big = _set(2000, 0.5, 0.0, seed=6)
    got = gain_share({"tiny": (tiny[0], tiny[1], tiny[1]), "big": (big[0], big[1], big[0])})
    gain_tiny = sum(tiny[1]) / 20 - sum(tiny[0]) / 20
    gain_big = sum(big[1]) / 2000 - sum(big[0]) / 2000
    assert got.share == pytest.approx(gain_tiny / (gain_tiny + gain_big))


def test_lists_that_do_not_line_up_are_refused() -> None:
    with pytest.raises(ValueError):
        gain_share({"a": ([1.0, 0.0], [1.0], [0.0, 0.0])})
    with pytest.raises(ValueError):
        gain_share({"a": ([], [], [])})
