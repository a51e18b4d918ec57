"""How much of a reference reranker's gain another one keeps, with a 95 % interval: the student/teacher verdict.

The dev suite's sets hold 30-150 questions each, so a mean MRR change of a few thousandths is inside the noise,
and a bar like "keeps 90 % of the teacher's gain" is only read with its interval. A stratified, paired bootstrap,
written here because scipy's ``bootstrap`` resamples whole samples, not questions within each of several sets:
every resample draws each set's questions with replacement, one draw shared by the first stage, the reference
and the candidate (the same questions and candidates), and takes the two mean gains over the sets, each set
weighing the same, as the tables' "mean change" does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GainShare:
    reference_gain: float  # mean over the sets of the reference's MRR change over the first stage
    candidate_gain: float
    share: float  # candidate_gain / reference_gain
    share_low: float  # 95 % interval of the share
    share_high: float
    gap_low: float  # 95 % interval of candidate_gain - reference_gain
    gap_high: float

    def __str__(self) -> str:
        return (f"{self.share:.0%} [{self.share_low:.0%}, {self.share_high:.0%}] of {self.reference_gain:+.3f}; "
                f"gap {self.candidate_gain - self.reference_gain:+.3f} [{self.gap_low:+.3f}, {self.gap_high:+.3f}]")


def gain_share(per_set: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float]]],
               resamples: int = 2000, seed: int = 0) -> GainShare:
    """``per_set``: set -> (first stage, reference, candidate) per-question scores (e.g. reciprocal ranks),
    parallel lists over the same questions."""
    rng = np.random.default_rng(seed)
    sets = [np.asarray(v, dtype=float) for v in per_set.values()]  # each (3, questions)
    if any(s.ndim != 2 or s.shape[0] != 3 or s.shape[1] == 0 for s in sets):
        raise ValueError("each set needs three parallel, non-empty lists of per-question scores")
    gains = np.zeros((resamples + 1, 2))  # row 0: the data as measured
    for s in sets:
        draws = np.vstack([np.arange(s.shape[1]), rng.integers(0, s.shape[1], (resamples, s.shape[1]))])
        means = s[:, draws].mean(axis=2)  # (3, resamples + 1)
        gains += np.stack([means[1] - means[0], means[2] - means[0]], axis=1) / len(sets)
    reference, candidate = gains[:, 0], gains[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        share = candidate / reference
    low, high = np.nanpercentile(share[1:], [2.5, 97.5])
    gap_low, gap_high = np.percentile(candidate[1:] - reference[1:], [2.5, 97.5])
    return GainShare(float(reference[0]), float(candidate[0]), float(share[0]), float(low), float(high),
                     float(gap_low), float(gap_high))
