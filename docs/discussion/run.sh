#!/usr/bin/env bash
# Reruns every measurement behind docs/DISCUSSION.md and redraws its tables and figures.
#
#   bash docs/discussion/run.sh            # from the repository root, with the venv of `make test`
#
# Needs the prepared data (train/recipes/b0-4class.sh, stage 0: data/4class-256; train/recipes/levers.sh also
# prepares data/feral-cats-256, which the model card's levers need, and the first steps of train/recipes/teachers.sh
# data/davis-256, data/everyday-256 and the teachers' targets, which its teacher levers need; the architecture arms
# need data/4class-256 alone). The training arms, the levers' included, take
# about 25 CPU-hours, some 13 hours on 2 CPU cores (two runs at a time, one thread each); the 27 runs of the
# 16-epoch protocol are most of it. Every step resumes or skips what is already done, so an interrupted run is
# continued by running this again. Results land in docs/discussion/results/ (small JSON).
set -euo pipefail
PY=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=1

"$PY" -m experiments.ablate run --jobs 2                # the training arms (Q1-Q8; the model card's levers too)
"$PY" -m bench.bench_model --sr-sweep --threads 1 \
    --json-out docs/discussion/results/attention-cost.json  # speed and memory of attention (Q2)
"$PY" -m experiments.discussion measure                  # padding, multi-scale, receptive fields, decoders (Q4-Q8)
"$PY" -m experiments.discussion report                  # tables into docs/DISCUSSION.md, figures
