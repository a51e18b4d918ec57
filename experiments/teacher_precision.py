"""Does the teacher's precision change its labels? int8 ONNX (what labels) against fp32 arithmetic on the same weights.

    .venv/bin/python experiments/teacher_precision.py --labelled runs/distil-labelled.json --questions 60

The teacher's only offline copy is the int8 file (weights and, at run time, activations quantized); its fp32
twin here is those weights dequantized (training/dequantize.py) run by torch in fp32, so what differs is the
activations' quantization alone. Prints, over the first N labelled questions: the mean Spearman correlation of
the two score lists per question, how often both pick the same best candidate, and the mean absolute logit gap.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.mine import load_mined  # noqa: E402


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labelled", required=True)
    ap.add_argument("--questions", type=int, default=60)
    args = ap.parse_args()
    from rag.rerank import CrossEncoderReranker, resolve_reranker
    from training.dequantize import torch_folder_from_onnx

    queries, _, first_stage = load_mined(args.labelled)
    teacher = first_stage["teacher"]
    path, _ = resolve_reranker(teacher["name"])
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = CrossEncoderReranker(str(torch_folder_from_onnx(path, Path(tmp) / "fp32")), backend="torch",
                                    max_length=teacher["max_length"])
        rows = []
        for q in queries[:args.questions]:
            int8 = q.positive_scores + q.negative_scores
            full = fp32.logits(q.query, q.positives + q.negatives)
            rows.append((spearman(int8, full), max(range(len(int8)), key=int8.__getitem__)
                         == max(range(len(full)), key=full.__getitem__),
                         sum(abs(x - y) for x, y in zip(int8, full)) / len(full)))
    n = len(rows)
    print(json.dumps({"teacher": teacher["spec"], "questions": n, "pairs": sum(1 + len(q.negatives)
                                                                             for q in queries[:n]),
                      "mean_spearman": round(sum(r[0] for r in rows) / n, 4),
                      "same_best": round(sum(r[1] for r in rows) / n, 4),
                      "mean_abs_logit_gap": round(sum(r[2] for r in rows) / n, 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
