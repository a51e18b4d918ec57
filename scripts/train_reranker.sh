#!/usr/bin/env bash
# Reproduces the shipped default reranker (models/rerank-minilm-l6) in two stages, then export it with
# `.venv/bin/rerank-rag reranker export runs/rerank-minilm-l6 models/rerank-minilm-l6` (int8 ONNX).
# Split: squad11_dev articles 0-37 minus the XQuAD paragraphs (validation: articles 38-47; XQuAD en/zh
# stay held out), cmrc2018 DEV_* only (TRIAL_* held out). Stage 2 continues from stage 1 on a fresh,
# larger sample of the same split at a lower learning rate. About 70 + 40 min on 2 idle CPU cores.
set -euo pipefail
OUT=${1:-runs/rerank-minilm-l6}
DATA=${DATA:-../shared/datasets}
PY=${PY:-.venv/bin/python}
SPLIT=(
  --dataset "$DATA/squad11_dev" --include 'squad11_dev=^s(0[0-9]|[12][0-9]|3[0-7])_'
  --dataset "$DATA/cmrc2018" --include 'cmrc2018=^DEV_'
  --exclude-overlap "$DATA/xquad/en"
  --max-length 160 --epochs 1 --negatives 7 --queries-per-step 4
  --val "$DATA/squad11_dev" --val-include 'squad11_dev=^s(3[89]|4[0-7])_' --val-max-queries 200
)
"$PY" -m training.train "${SPLIT[@]}" --max-queries squad11_dev=1100 --max-queries cmrc2018=500 \
  --seed 13 --lr 5e-5 --head-lr 1e-3 --warmup 0.1 --out "$OUT-stage1"
"$PY" -m training.train "${SPLIT[@]}" --max-queries squad11_dev=3000 --max-queries cmrc2018=600 \
  --seed 14 --lr 3e-5 --head-lr 3e-4 --warmup 0.05 --base "$OUT-stage1" --out "$OUT"
