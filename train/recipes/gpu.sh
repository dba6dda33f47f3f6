#!/usr/bin/env bash
# Train the app's checkpoint on a lent GPU within a time budget, in one call (README, "On a lent GPU").
#
# Prepared here, once (re-encoded at JPEG q70 so that it travels under the 64 MiB limit):
#   python -m train.prepare --out data/4class-256-q70 --short-side 256 --jpeg-quality 70 \
#       --sources sift-flow=../shared/datasets/sift-flow msrc-v2=../shared/datasets/msrc-v2 camvid=...
# Then one device call: command "bash train/lent_gpu.sh", carry ["data/4class-256-q70"], timeout_s 600.
#
# Two probe epochs time an epoch (training + validation); the real run gets as many epochs as fit in
# BUDGET_S seconds from the start, starting from INIT (default: the shipped checkpoint, whose history it
# continues). The best epoch is exported in fp16; checkpoint, curves, history and log land in $OUT.
set -euo pipefail
DATA=${DATA:-data/4class-256-q70}
INIT=${INIT:-checkpoints/segformer-b0-4class}
BUDGET_S=${BUDGET_S:-480}
RUNS=${RUNS:-/tmp/lent-gpu}
PY=${PYTHON:-python3}
: "${OUT:?set OUT to the folder that receives the results}"
export PYTHONUNBUFFERED=1
recipe=(--data "$DATA" --init "$INIT" --batch-size "${BATCH:-16}" --lr "${LR:-4e-4}" --head-lr-mult 1
    --warmup-iters "${WARMUP:-200}" --workers "${WORKERS:-12}")
start=$SECONDS
rm -rf "$RUNS" && mkdir -p "$RUNS" "$OUT"
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true; } | tee "$OUT/log.txt"

$PY -m train.train "${recipe[@]}" --out "$RUNS/probe" --epochs 2 2>>"$RUNS/probe.err" | tee -a "$OUT/log.txt"
epoch_s=$($PY -c 'import json, sys; print(json.load(open(sys.argv[1]))["history"][-1]["epoch_seconds"])' \
    "$RUNS/probe/last.json")
left=$((BUDGET_S - (SECONDS - start) - 30)) # 30 s for start-up and export
epochs=$($PY -c 'import sys; print(max(1, int(float(sys.argv[1]) / float(sys.argv[2]))))' "$left" "$epoch_s")
echo "probe: ${epoch_s} s an epoch; ${left} s left -> ${epochs} epochs" | tee -a "$OUT/log.txt"

$PY -m train.train "${recipe[@]}" --out "$RUNS/run" --epochs "$epochs" 2>>"$RUNS/run.err" | tee -a "$OUT/log.txt"
$PY -m train.export --run "$RUNS/run" --out "$OUT/segformer-b0-4class" | tee -a "$OUT/log.txt"
cp "$RUNS/run/last.json" "$OUT/last.json"
tail -c 4000 "$RUNS/run.err" >"$OUT/stderr-tail.txt"
echo "done in $((SECONDS - start)) s" | tee -a "$OUT/log.txt"
