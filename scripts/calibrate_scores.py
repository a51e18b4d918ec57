"""The readable rerank score: a probability fitted on dev data (Platt scaling), so that it spreads and means
the same across questions where ``sigmoid(logit)`` saturates.

    .venv/bin/python scripts/calibrate_scores.py --spec 'cross-encoder/ms-marco-MiniLM-L-12-v2#256'

Reads the candidates and logits ``scripts/rerank_blend.py`` recorded (``runs/blend.json``): every first-stage
candidate of every dev set, labelled relevant when its document is judged relevant. Fits
``P(relevant) = sigmoid(a * logit + b)`` by logistic regression, each set weighted equally (no set's
size decides), and prints (a, b) for the catalog entry's ``calibration``, with each set's calibration error
(mean |predicted - observed| over ten bins) for the fitted and for the plain sigmoid.

``--threshold`` then sets the single threshold that ``rag/abstain.py`` replaced (``low_confidence_score``, kept
here to compare with: ``scripts/fit_abstention.py`` fits the decision now) on the same candidates, ranked as the
default does (cascade depth 6, confident blend at 0.7): for every question, the best readable score of the top-5
when a relevant document is among them ("answered"), and the same question with its relevant candidates taken out
of the list ("removed": what a user sees when the store lacks the answer; the next-deeper candidates are not there
to fill in, so the removed lists are 1-2 candidates shorter). The threshold is the highest that warns on at most
15 % of the answered questions in every set.
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
    ap.add_argument("--threshold", action="store_true", help="also choose the old single threshold (see above)")
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
    if args.threshold:
        print()
        print(threshold_table({label: data for label, data in done.items() if args.spec in data["logits"]},
                              args.spec, a, b))
    return 0


def _best_of_top5(candidates: list, logits: list[float], a: float, b: float) -> tuple[float, list[str]]:
    from rag.rerank import blend, sigmoid

    depth = min(6, len(candidates))
    head = logits[:depth]
    final = blend(head, [c[2] for c in candidates[:depth]], "confident", 0.7, confidence=sigmoid(max(head)))
    order = sorted(range(depth), key=lambda i: -final[i]) + list(range(depth, len(candidates)))
    top = order[:5]
    scored = [sigmoid(a * logits[i] + b) for i in top if i < depth]
    return max(scored, default=0.0), [candidates[i][0] for i in top]


def threshold_table(done: dict, spec: str, a: float, b: float, max_false_alarm: float = 0.15) -> str:
    answered, removed = {}, {}
    for label, data in done.items():
        answered[label], removed[label] = [], []
        for row, logits in zip(data["queries"], data["logits"][spec], strict=True):
            relevant = set(row["relevant"])
            best, top = _best_of_top5(row["candidates"], logits, a, b)
            if relevant & set(top):
                answered[label].append(best)
                keep = [i for i, c in enumerate(row["candidates"]) if c[0] not in relevant]
                if keep:
                    removed[label].append(_best_of_top5([row["candidates"][i] for i in keep],
                                                        [logits[i] for i in keep], a, b)[0])
    thresholds = [round(t, 2) for t in np.arange(0.05, 0.80, 0.05)]
    lines = ["| threshold | " + " | ".join(f"{label}: answered / removed" for label in done) + " |",
             "|---|" + "---|" * len(done)]
    chosen = None
    for t in thresholds:
        warn_ok = [np.mean(np.array(answered[label]) < t) for label in done]
        warn_gone = [np.mean(np.array(removed[label]) < t) for label in done]
        if max(warn_ok) <= max_false_alarm:
            chosen = t
        lines.append(f"| {t:.2f} | " + " | ".join(f"{ok:.0%} / {gone:.0%}" for ok, gone in zip(warn_ok, warn_gone))
                     + " |")
    lines.append(f"\nlow_confidence_score: {chosen} (the highest that warns on <= {max_false_alarm:.0%} of "
                 "the answered questions in every set)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
