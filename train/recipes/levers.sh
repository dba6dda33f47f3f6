#!/usr/bin/env bash
# The levers' A/B of MODEL_CARD.md ("What each lever gives"): distillation from the ImageNet-pretrained
# EfficientNet-Lite0, the reference initialisation, feral-cats with partial labels, Simple Copy-Paste, and
# distillation beside the labels, each against its reference under one short protocol, two seeds each; then the
# table.
#
#   bash train/recipes/levers.sh            # from the repository root; DATASETS=PATH for the raw datasets
#
# About 2 CPU-hours, two runs at a time with one torch thread each. Every arm resumes or skips what is already done,
# so an interrupted run is continued by running this again. The fine-tune arms start from the shipped checkpoint.
# The teacher's packages: pip install -r requirements-distill.txt.
set -euo pipefail
DATASETS=${DATASETS:-../shared/datasets}
PY=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=1

[ -f data/4class-256/manifest.json ] || "$PY" -m train.prepare --out data/4class-256 --short-side 256 \
    --sources sift-flow="$DATASETS/sift-flow" msrc-v2="$DATASETS/msrc-v2" camvid="$DATASETS/camvid"
[ -f data/feral-cats-256/manifest.json ] || "$PY" -m train.prepare --out data/feral-cats-256 --short-side 256 \
    --sources feral-cats="$DATASETS/feral-cats"

# From random weights: distillation against as many more epochs of training, short and long; initialisation.
"$PY" -m experiments.ablate run --jobs 2 --arms paper reference-init scratch-4-epochs distilled scratch-16-epochs \
    distilled-long
# From the shipped weights, one epoch: what the data and the loss add.
"$PY" -m experiments.ablate run --jobs 2 --arms finetune-ce finetune-cats finetune-copy-paste finetune-cats-copy-paste \
    finetune-cats-copy-paste-hints
"$PY" -m experiments.ablate report
