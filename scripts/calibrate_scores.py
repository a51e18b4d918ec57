"""The readable rerank score: a probability fitted on dev data (Platt scaling), so that it spreads and means
the same across questions where ``sigmoid(logit)`` saturates.

    .venv/bin/python scripts/calibrate_scores.py --spec 'cross-encoder/ms-marco-MiniLM-L-12-v2#256'

Reads the candidates and logits ``scripts/rerank_blend.py`` recorded (``runs/blend.json``): every first-stage
candidate of every dev set, labelled relevant when its document is judged relevant. Fits
``P(relevant) = sigmoid(a * logit + b)`` by logistic regression, each set weighted equally (no set's
size decides), and prints (a, b) for the catalog entry's ``calibration``, with each set's calibration error
(mean |predicted - observed| over ten bins) for the fitted and for the plain sigmoid.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression


def labelled(data: dict, spec: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for row, logits in zip(data["queries"], data["logits"][spec], strict=True):
        relevant = set(row["relevant"])
        for candidate, logit in zip(row["candidates"], logits, strict=True):
            xs.append(logit)
            ys.append(candidate[0] in relevant)
    return np.array(xs), np.array(ys, dtype=float)


def calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    which = np.minimum((p * bins).astype(int), bins - 1)
    err = sum(abs(p[which == b].mean() - y[which == b].mean()) * (which == b).sum() for b in range(bins)
              if (which == b).any())
    return float(err / len(p))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", required=True, help="a reranker spec recorded in the blend file")
    ap.add_argument("--blend-file", default="runs/blend.json")
    args = ap.parse_args()
    done = json.loads(Path(args.blend_file).read_text())
    sets = {label: labelled(data, args.spec) for label, data in done.items() if args.spec in data["logits"]}
    x = np.concatenate([v[0] for v in sets.values()])
    y = np.concatenate([v[1] for v in sets.values()])
    weight = np.concatenate([np.full(len(v[0]), 1 / len(v[0])) for v in sets.values()])
    fit = LogisticRegression(C=1e6).fit(x[:, None], y, sample_weight=weight * len(x))
    a, b = float(fit.coef_[0, 0]), float(fit.intercept_[0])
    print(f"calibration for {args.spec}: a = {a:.3f}, b = {b:.3f} ({len(x)} candidates, {len(sets)} sets)\n")
    print("| set | candidates | relevant | calibration error, fitted | plain sigmoid |")
    print("|---|---|---|---|---|")
    for label, (xs, ys) in sets.items():
        fitted, plain = 1 / (1 + np.exp(-(a * xs + b))), 1 / (1 + np.exp(-xs))
        print(f"| {label} | {len(xs)} | {int(ys.sum())} | {calibration_error(fitted, ys):.3f} | "
              f"{calibration_error(plain, ys):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
