#!/usr/bin/env bash
# Train the shipped checkpoint further on a CUDA GPU, within a time budget.
#
#   bash train/recipes/gpu.sh [BUDGET_S] [OUT]        # defaults: 3600 seconds, runs/gpu
#
# Two probe epochs time one epoch (training + validation); then a run from INIT (default: the shipped
# checkpoint, whose history it continues) gets as many epochs as fit in what is left of the budget. The run's
# best epoch is exported in fp16 to OUT/segformer-b0-4class (+ curves), beside the run's full history
# (OUT/last.json), the log and the tail of stderr; the runs themselves stay in RUNS (default OUT/runs).
# On CUDA the training loop uses bf16 autocast and channels-last by itself.
#
# The data is the prepared 4-class set at short side 256; if DATA does not hold one yet, it is prepared from
# the raw datasets under DATASETS first (within the budget, which counts from the start). Score the export on
# the raw val splits before using it:
#   python -m train.evaluate --checkpoint runs/gpu/segformer-b0-4class --split val \
#       --data ../shared/datasets/sift-flow ../shared/datasets/msrc-v2 ../shared/datasets/camvid
#
# Settings by environment: BUDGET_S, OUT, DATA, DATASETS, INIT, BATCH (16), LR (4e-4), WARMUP (200 iterations),
# WORKERS (12 loader processes), RUNS, PYTHON.
set -euo pipefail
BUDGET_S=${1:-${BUDGET_S:-3600}}
OUT=${2:-${OUT:-runs/gpu}}
DATA=${DATA:-data/4class-256}
DATASETS=${DATASETS:-../shared/datasets}
INIT=${INIT:-checkpoints/segformer-b0-4class}
RUNS=${RUNS:-$OUT/runs}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
start=$SECONDS

if [ ! -f "$DATA/manifest.json" ]; then
    $PY -m train.prepare --out "$DATA" --short-side 256 --sources sift-flow="$DATASETS/sift-flow" \
        msrc-v2="$DATASETS/msrc-v2" camvid="$DATASETS/camvid"
fi

# Batch 16 (twice the CPU recipe's) at lr 4e-4 after a 200-iteration warmup: a warm restart from the shipped
# weights, as the CPU recipe's later stages are.
recipe=(--data "$DATA" --init "$INIT" --batch-size "${BATCH:-16}" --lr "${LR:-4e-4}" --head-lr-mult 1
    --warmup-iters "${WARMUP:-200}" --workers "${WORKERS:-12}")
rm -rf "$RUNS/probe" "$RUNS/run" "$RUNS/probe.err" "$RUNS/run.err" && mkdir -p "$RUNS" "$OUT" # a rerun starts afresh
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true; } | tee "$OUT/log.txt"

$PY -m train.train "${recipe[@]}" --out "$RUNS/probe" --epochs 2 2>>"$RUNS/probe.err" | tee -a "$OUT/log.txt"
epoch_s=$($PY -c 'import json, sys; print(json.load(open(sys.argv[1]))["history"][-1]["epoch_seconds"])' \
    "$RUNS/probe/last.json")
left=$((BUDGET_S - (SECONDS - start) - 30)) # 30 s for start-up and export
epochs=$($PY -c 'import sys; print(max(1, int(float(sys.argv[1]) / float(sys.argv[2]))))' "$left" "$epoch_s")
echo "probe: ${epoch_s} s an epoch; ${left} s left -> ${epochs} epochs" | tee -a "$OUT/log.txt"

$PY -m train.train "${recipe[@]}" --out "$RUNS/run" --epochs "$epochs" 2>>"$RUNS/run.err" | tee -a "$OUT/log.txt"
$PY -m train.export --run "$RUNS/run" --out "$OUT/segformer-b0-4class" \
    --working-short-side "${WORKING_SHORT_SIDE:-384}" | tee -a "$OUT/log.txt"
cp "$RUNS/run/last.json" "$OUT/last.json"
tail -c 4000 "$RUNS/run.err" >"$OUT/stderr-tail.txt"
echo "done in $((SECONDS - start)) s" | tee -a "$OUT/log.txt"
