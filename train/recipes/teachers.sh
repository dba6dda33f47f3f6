#!/usr/bin/env bash
# The recipe of the shipped checkpoint checkpoints/segformer-b0-4class (MODEL_CARD.md), the segmentation teachers'
# stages. The teachers' targets are made once (train.teach: DeepLabV3-MobileNetV2 on ADE20K and on PASCAL VOC,
# ../shared/models). Stages 11-13 (tried, not shipped) fine-tune the stage 9 weights with them; the shipped lineage
# is stages 14-16 and 18: an encoder distilled from ImageNet EfficientNet-Lite0, then 31 epochs on the labels and
# the fused teachers' targets over the three sources, feral-cats, DAVIS 2016 and the unlabelled everyday photos,
# then 3 epochs with labels alone on the labelled pixels; it runs at a 384-pixel working short side (stage 17) and
# is exported in fp16. Each candidate is scored on the raw val splits by the rule results/README.md fixed first.
#
#   bash train/recipes/teachers.sh            # DATASETS=PATH / MODELS=PATH for the raw datasets and the teachers
#
# The teachers' runtime: pip install -r requirements-teach.txt. Every step resumes or skips what is already done.
# About 6 CPU-hours for the shipped lineage with one torch thread per run, plus the stages tried beside it.
set -euo pipefail
DATASETS=${DATASETS:-../shared/datasets}
MODELS=${MODELS:-../shared/models}
PY=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=1
prepare() { [ -f "data/$1/manifest.json" ] || "$PY" -m train.prepare --out "data/$1" --short-side 256 --sources "${@:2}"; }

prepare 4class-256 sift-flow="$DATASETS/sift-flow" msrc-v2="$DATASETS/msrc-v2" camvid="$DATASETS/camvid"
prepare feral-cats-256 feral-cats="$DATASETS/feral-cats"
prepare davis-256 davis-2016="$DATASETS/davis-2016"
prepare everyday-256 everyday-photos="$DATASETS/everyday-photos"
folders=(data/4class-256 data/feral-cats-256 data/davis-256 data/everyday-256)

# The teachers' targets (about 35 minutes on two cores), and the fusion rules scored on val.
"$PY" -m train.teach --data "${folders[@]}" --models "$MODELS" --workers 2
"$PY" -m train.teach --data "${folders[@]::3}" --score --json results/teachers-val.json

# The run (results/README.md fixed it before it was scored), and the teacher levers' A/B on the other core.
"$PY" -m train.train --data "${folders[@]}" --init checkpoints/segformer-b0-4class --epochs 4 --lr 2e-4 \
    --head-lr-mult 1 --warmup-iters 100 --teacher-weight 1 --teacher-temperature 1 --teacher max-person \
    --cpu-bf16 --workers 1 --seed 11 --out runs/s11 &
"$PY" -m experiments.ablate run --jobs 1 --arms teacher-none teacher-fused
wait
"$PY" -m train.soup --checkpoints runs/s11/last checkpoints/segformer-b0-4class --out runs/wise11/best
raw=("$DATASETS/sift-flow" "$DATASETS/msrc-v2" "$DATASETS/camvid" "$DATASETS/feral-cats")
"$PY" -m train.evaluate --checkpoint runs/s11/last --data "${raw[@]}" --json > results/eval/stage11-last.json
"$PY" -m train.evaluate --checkpoint runs/wise11/best --data "${raw[@]}" --json > results/eval/stage11-wise.json

# Stage 12 (tried, not shipped): stage 11's run with the teacher's target only on the labelled pixels where its argmax
# agrees with the label (--teacher-on-labelled agree), scored the same way.
"$PY" -m train.train --data "${folders[@]}" --init checkpoints/segformer-b0-4class --epochs 4 --lr 2e-4 \
    --head-lr-mult 1 --warmup-iters 100 --teacher-weight 1 --teacher-temperature 1 --teacher max-person \
    --teacher-on-labelled agree --cpu-bf16 --workers 1 --seed 11 --out runs/s12
"$PY" -m train.soup --checkpoints runs/s12/last checkpoints/segformer-b0-4class --out runs/wise12/best
"$PY" -m train.evaluate --checkpoint runs/s12/last --data "${raw[@]}" --json > results/eval/stage12-last.json
"$PY" -m train.evaluate --checkpoint runs/wise12/best --data "${raw[@]}" --json > results/eval/stage12-wise.json

# Stage 13 (results/README.md): stage 12 continued for 7 epochs at half its rate, scored the same way. As run, without
# stage 12's --head-lr-mult 1: the decoder at train.train's default 10x the encoder's rate.
"$PY" -m train.train --data "${folders[@]}" --init runs/s12/last --epochs 7 --lr 1e-4 --warmup-iters 100 \
    --teacher-weight 1 --teacher-temperature 1 --teacher max-person --teacher-on-labelled agree --cpu-bf16 \
    --workers 1 --seed 13 --out runs/s13
"$PY" -m train.soup --checkpoints runs/s13/last checkpoints/segformer-b0-4class --out runs/wise13/best
"$PY" -m train.evaluate --checkpoint runs/s13/last --data "${raw[@]}" --json > results/eval/stage13-last.json
"$PY" -m train.evaluate --checkpoint runs/wise13/best --data "${raw[@]}" --json > results/eval/stage13-wise.json

# Stage 14 (results/README.md): the teachers from a distilled encoder. EfficientNet-Lite0's hints on the four folders'
# images, then 12 epochs at 128-pixel crops (the scratch recipe) and 3 at 256 with the fused teachers' targets.
"$PY" -m train.distill --data "${folders[@]}" --epochs 4 --crop-size 128 --batch-size 16 --seed 14 --workers 1 \
    --out runs/s14-distill
teach=(--teacher-weight 1 --teacher-temperature 1 --teacher max-person --teacher-on-labelled agree --cpu-bf16 --workers 1)
"$PY" -m train.train --recipe scratch --init runs/s14-distill/last --data "${folders[@]}" --epochs 12 \
    --crop-size 128 --base-size 256 --batch-size 8 "${teach[@]}" --seed 14 --out runs/s14a
"$PY" -m train.train --init runs/s14a/last --data "${folders[@]}" --epochs 3 --crop-size 256 --batch-size 8 \
    --lr 2e-4 --head-lr-mult 1 --warmup-iters 100 "${teach[@]}" --seed 15 --out runs/s14b
"$PY" -m train.evaluate --checkpoint runs/s14a/last --data "${raw[@]}" --json > results/eval/stage14-leg1.json
"$PY" -m train.evaluate --checkpoint runs/s14b/last --data "${raw[@]}" --json > results/eval/stage14-last.json

# Stage 15 (results/README.md): stage 14's leg 2 continued for 8 epochs at 256-pixel crops, scored the same way. As
# run, it started from leg 2's fp16 export (results/weights/stage14-leg2 at commit 9c70205, since replaced).
"$PY" -m train.train --init runs/s14b/last --data "${folders[@]}" --epochs 8 --crop-size 256 \
    --batch-size 8 --lr 2e-4 --head-lr-mult 1 --warmup-iters 100 "${teach[@]}" --seed 16 --out runs/s15
"$PY" -m train.evaluate --checkpoint runs/s15/last --data "${raw[@]}" --json > results/eval/stage15-last.json

# Stage 16 (results/README.md): stage 15 continued for 8 epochs at half its rate, scored the same way. As run, it
# started from stage 15's fp16 export (results/weights/stage15 at commit 2ea378a, since replaced).
"$PY" -m train.train --init runs/s15/last --data "${folders[@]}" --epochs 8 --crop-size 256 \
    --batch-size 8 --lr 1e-4 --head-lr-mult 1 --warmup-iters 100 "${teach[@]}" --seed 17 --out runs/s16
"$PY" -m train.evaluate --checkpoint runs/s16/last --data "${raw[@]}" --json > results/eval/stage16-last.json

# Stage 17 (results/README.md): stage 16's weights at working short sides of 384, 448 and 512 pixels, the one with the
# highest 3-source mIoU chosen; stage 9 at the chosen scale for the record. No training.
for side in 384 448 512; do
    "$PY" -m train.evaluate --checkpoint results/weights/stage16 --data "${raw[@]}" --working-short-side "$side" \
        --json > "results/eval/stage17-s$side.json"
done
"$PY" -m train.evaluate --checkpoint checkpoints/segformer-b0-4class --data "${raw[@]}" --working-short-side 384 \
    --json > results/eval/stage9-wise-s384.json

# Stage 18 (results/README.md): stage 16 for 3 more epochs at half stage 16's rate, each labelled pixel learning from
# its label alone (the teachers only where nobody labelled), its last epoch scored at stage 17's working scale.
stage18() {  # SEED OUT REPORT
    "$PY" -m train.train --init results/weights/stage16 --data "${folders[@]}" --epochs 3 --crop-size 256 \
        --batch-size 8 --lr 5e-5 --head-lr-mult 1 --warmup-iters 50 --teacher-weight 1 --teacher-temperature 1 \
        --teacher max-person --teacher-on-labelled none --workers 1 --seed "$1" --out "$2"
    "$PY" -m train.evaluate --checkpoint "$2/last" --data "${raw[@]}" --working-short-side 384 --json > "$3"
}
stage18 18 runs/s18 results/eval/stage18-s384.json
"$PY" -m train.export --run runs/s18 --which last --out checkpoints/segformer-b0-4class --working-short-side 384
# Stage 18's second seed, for the record (results/README.md): not a candidate.
stage18 19 runs/s18-seed19 results/eval/stage18-seed19-s384.json
