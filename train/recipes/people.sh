#!/usr/bin/env bash
# Stage 19 (results/README.md): the shipped stage 18 taught on what people photograph. Two new sources, ccp-people
# (full-length people) and oxford-pets (cat and dog close-ups), join the six folders; every folder is prepared at the
# app's working scale (shorter side 384, or the image's own where smaller: every source here is at its own size) and
# the teachers' targets are made there; training resizes each crop's image around that scale (--base-size 384, so
# 0.5-2x the size the app runs at) instead of around 256; the fused targets take VOC's vehicles where it is the surer
# teacher if the teachers' val scores say so (below; they said no). Its last epoch is scored on the raw val splits at
# the working scale by the rule results/README.md fixed before the run was scored.
#
#   bash train/recipes/people.sh            # DATASETS=PATH / MODELS=PATH for the raw datasets and the teachers
#
# The teachers' runtime: pip install -r requirements-teach.txt. Every step resumes or skips what is already done.
# On two cores: the targets about 85 minutes (both cores; the 384-pixel photos cost more than at 256), then one run
# at about 1.5 s a step with its data loader on the other core (about 20 minutes an epoch, validation included).
set -euo pipefail
DATASETS=${DATASETS:-../shared/datasets}
MODELS=${MODELS:-../shared/models}
PY=${PYTHON:-.venv/bin/python}
FUSION=${FUSION:-max-person}
EPOCHS=${EPOCHS:-3}
export OMP_NUM_THREADS=1
prepare() { [ -f "data/$1/manifest.json" ] || "$PY" -m train.prepare --out "data/$1" --short-side 384 --sources "${@:2}"; }

prepare 4class-384 sift-flow="$DATASETS/sift-flow" msrc-v2="$DATASETS/msrc-v2" camvid="$DATASETS/camvid"
prepare feral-cats-384 feral-cats="$DATASETS/feral-cats"
prepare davis-384 davis-2016="$DATASETS/davis-2016"
prepare everyday-384 everyday-photos="$DATASETS/everyday-photos"
prepare people-384 ccp-people="$DATASETS/ccp-people"
prepare pets-384 oxford-pets="$DATASETS/oxford-pets"
folders=(data/4class-384 data/feral-cats-384 data/davis-384 data/everyday-384 data/people-384 data/pets-384)
labelled=(data/4class-384 data/feral-cats-384 data/people-384 data/pets-384)
raw=("$DATASETS/sift-flow" "$DATASETS/msrc-v2" "$DATASETS/camvid" "$DATASETS/feral-cats" "$DATASETS/ccp-people"
    "$DATASETS/oxford-pets")

# The teachers' targets, and every fusion rule scored on the raw val labels and on the everyday photos (FUSION is
# chosen from these, before any student of this stage is scored).
"$PY" -m train.teach --data "${folders[@]}" --models "$MODELS" --workers 2
"$PY" -m train.teach --data "${labelled[@]}" --score --json results/teachers-val-384.json
"$PY" -m train.everyday --teachers data/everyday-384 > results/eval/everyday-teachers.json

# The baseline, stage 18 as it shipped (stage 21 replaced it; the repository's history keeps it), on the same
# splits and photos.
mkdir -p runs/stage18
for ext in safetensors json; do
    if [ ! -f "runs/stage18/last.$ext" ]; then
        git show "b305109:checkpoints/segformer-b0-4class.$ext" > "runs/stage18/part.$ext"
        mv "runs/stage18/part.$ext" "runs/stage18/last.$ext"
    fi
done
"$PY" -m train.evaluate --checkpoint runs/stage18/last --data "${raw[@]}" --json \
    > results/eval/stage18-people-s384.json
"$PY" -m train.everyday --checkpoint runs/stage18/last > results/eval/everyday-stage18.json

stage19() {  # SEED OUT
    "$PY" -m train.train --init runs/stage18/last --data "${folders[@]}" --epochs "$EPOCHS" \
        --crop-size 256 --base-size 384 --batch-size 8 --lr 1e-4 --head-lr-mult 1 --warmup-iters 100 \
        --teacher-weight 1 --teacher-temperature 1 --teacher "$FUSION" --teacher-on-labelled none --workers 1 \
        --seed "$1" --out "$2"
}
# As run: seed 190 alone (results/README.md: the pair, side by side, would not have finished in time). With the
# compute for it, run seed 191 too and score the soup of the two last epochs (train.soup), as the rule first said.
stage19 190 runs/s19a
"$PY" -m train.evaluate --checkpoint runs/s19a/last --data "${raw[@]}" --working-short-side 384 --json \
    > results/eval/stage19-s384.json
"$PY" -m train.everyday --checkpoint runs/s19a/last --working-short-side 384 > results/eval/everyday-stage19.json
"$PY" -m train.standing results/eval/stage18-people-s384.json results/eval/stage19-s384.json results/teachers-val-384.json
# Not shipped (results/README.md); stage 20 continues its fp16 weights.
"$PY" -m train.export --run runs/s19a --which last --out results/weights/stage19

# Stage 20 (results/README.md): stage 19 continued with the one-object sources drawn more often (feral-cats listed
# twice, oxford-pets three times: a cat crop twice, a pet crop three times as often), at half the rate, two seeds
# side by side (about 2 s a step each, 26 minutes an epoch). The candidate is the soup of their last epochs; if it
# fails the rule, its average with stage 18.
balanced=(data/4class-384 data/feral-cats-384 data/feral-cats-384 data/davis-384 data/everyday-384 data/people-384
    data/pets-384 data/pets-384 data/pets-384)
stage20() {  # SEED OUT
    "$PY" -m train.train --init results/weights/stage19 --data "${balanced[@]}" --epochs 2 \
        --crop-size 256 --base-size 384 --batch-size 8 --lr 5e-5 --head-lr-mult 1 --warmup-iters 50 \
        --teacher-weight 1 --teacher-temperature 1 --teacher "$FUSION" --teacher-on-labelled none --workers 1 \
        --seed "$1" --out "$2"
}
stage20 200 runs/s20a &
stage20 201 runs/s20b &
wait
"$PY" -m train.soup --checkpoints runs/s20a/last runs/s20b/last --out runs/s20soup/last
for run in s20soup:soup s20a:s200 s20b:s201; do
    "$PY" -m train.evaluate --checkpoint "runs/${run%%:*}/last" --data "${raw[@]}" --working-short-side 384 --json \
        > "results/eval/stage20-${run##*:}-s384.json"
done
"$PY" -m train.soup --checkpoints runs/s20soup/last runs/stage18/last --out runs/s20wise/last
"$PY" -m train.evaluate --checkpoint runs/s20wise/last --data "${raw[@]}" --working-short-side 384 --json \
    > results/eval/stage20-wise-s384.json
# Neither candidate passed (results/README.md); stage 21 continues the soup's fp16 weights.
"$PY" -m train.export --run runs/s20soup --which last --out results/weights/stage20

# Stages 21-26 (results/README.md): a soup continued 2 epochs (or the fifth argument's number) on the folders of
# mix (cats and pets drawn three times as well, unless set otherwise), with the options in extra (none unless set),
# seeds STAGE0 and STAGE1 side by side (about 30 minutes an epoch each); the candidates are the soup of their last
# epochs and that soup averaged with AVERAGE_WITH, scored beside the bar BAR and the teachers.
cats3=(data/4class-384 data/feral-cats-384 data/feral-cats-384 data/feral-cats-384 data/davis-384 data/everyday-384
    data/people-384 data/pets-384 data/pets-384 data/pets-384)
mix=("${cats3[@]}")
extra=()
balanced_stage() {  # STAGE INIT AVERAGE_WITH BAR [EPOCHS]
    local s=$1 run
    for run in a:0 b:1; do
        "$PY" -m train.train --init "$2" --data "${mix[@]}" --epochs "${5:-2}" \
            --crop-size 256 --base-size 384 --batch-size 8 --lr 5e-5 --head-lr-mult 1 --warmup-iters 50 \
            --teacher-weight 1 --teacher-temperature 1 --teacher "$FUSION" --teacher-on-labelled none --workers 1 \
            "${extra[@]}" --seed "$s${run##*:}" --out "runs/s$s${run%%:*}" &
    done
    wait
    "$PY" -m train.soup --checkpoints "runs/s${s}a/last" "runs/s${s}b/last" --out "runs/s${s}soup/last"
    "$PY" -m train.soup --checkpoints "runs/s${s}soup/last" "$3" --out "runs/s${s}wise/last"
    for run in "s${s}soup:soup" "s${s}a:s${s}0" "s${s}b:s${s}1" "s${s}wise:wise"; do
        "$PY" -m train.evaluate --checkpoint "runs/${run%%:*}/last" --data "${raw[@]}" --working-short-side 384 \
            --json > "results/eval/stage$s-${run##*:}-s384.json"
    done
    for run in soup wise; do
        "$PY" -m train.everyday --checkpoint "runs/s$s$run/last" --working-short-side 384 \
            > "results/eval/everyday-stage$s-$run.json"
    done
    "$PY" -m train.standing "$4" "results/eval/stage$s-s${s}0-s384.json" "results/eval/stage$s-s${s}1-s384.json" \
        "results/eval/stage$s-soup-s384.json" "results/eval/stage$s-wise-s384.json" results/teachers-val-384.json
}

# Stage 21 continued stage 20's soup; its soup failed the rule, its average with stage 18 shipped (until stage 22).
balanced_stage 21 results/weights/stage20 runs/stage18/last results/eval/stage18-people-s384.json
"$PY" -m train.export --run runs/s21soup --which last --out results/weights/stage21

# Stage 22 continued stage 21's soup; its soup failed the rule, its average with stage 21's shipped average passed
# and shipped.
balanced_stage 22 results/weights/stage21 runs/s21wise/last results/eval/stage21-wise-s384.json
"$PY" -m train.export --run runs/s22soup --which last --out results/weights/stage22
"$PY" -m train.export --run runs/s22wise --which last --out checkpoints/segformer-b0-4class --working-short-side 384

# Stage 23 continued stage 22's soup; neither candidate passed: stage 22's average stays shipped, and its soup's
# weights (weights/stage22) remain the ones to continue from.
balanced_stage 23 results/weights/stage22 runs/s22wise/last results/eval/stage22-wise-s384.json

# The short A/Bs: one epoch from stage 22's soup on the first 3,600 training images of ab_folders, in this order;
# ab_score scores both seeds of one arm beside the selfie arm of the first A/B.
ab_folders=(data/people-384 data/pets-384 data/everyday-384 data/davis-384 data/feral-cats-384 data/4class-384)
ab24() {  # FUSION SEED OUT [OPTIONS...]
    "$PY" -m train.train --init results/weights/stage22 --data "${ab_folders[@]}" --limit 3600 --epochs 1 \
        --crop-size 256 --base-size 384 --batch-size 8 --lr 5e-5 --head-lr-mult 1 --warmup-iters 50 \
        --teacher-weight 1 --teacher-temperature 1 --teacher "$1" --teacher-on-labelled none --workers 1 \
        "${@:4}" --seed "$2" --out "$3"
}
ab_score() {  # NAME: runs/NAME-{240,241} scored on raw val, beside the selfie arm of this A/B
    local seed
    for seed in 240 241; do
        "$PY" -m train.evaluate --checkpoint "runs/$1-$seed/last" --data "${raw[@]}" --working-short-side 384 \
            --json > "results/eval/$1-$seed-s384.json"
    done
    "$PY" -m train.standing results/eval/ab24-selfie-{240,241}-s384.json results/eval/"$1"-{240,241}-s384.json
}
# A/B (results/README.md): selfie-trim against max-person in the student, seeds 240 and 241 paired.
for seed in 240 241; do
    ab24 max-person "$seed" "runs/ab24-max-$seed" &
    ab24 selfie-trim "$seed" "runs/ab24-selfie-$seed" &
    wait
done
for run in ab24-{max,selfie}-{240,241}; do
    "$PY" -m train.evaluate --checkpoint "runs/$run/last" --data "${raw[@]}" --working-short-side 384 --json \
        > "results/eval/$run-s384.json"
done
"$PY" -m train.standing results/eval/ab24-{max,selfie}-{240,241}-s384.json

# Stage 24 (results/README.md): stage 22's soup continued as stage 23, with the selfie teacher's targets. Neither
# candidate passed; its soup's weights (weights/stage24) are the ones to continue from.
FUSION=selfie-trim balanced_stage 24 results/weights/stage22 runs/s22wise/last results/eval/stage22-wise-s384.json
"$PY" -m train.export --run runs/s24soup --which last --out results/weights/stage24

# Stage 25 (results/README.md): stage 24's soup, 1 epoch more with the three sources listed twice. Neither candidate
# passed; stage 22's average stays shipped, and weights/stage24 remains the point to continue from.
mix=(data/4class-384 "${cats3[@]}")
FUSION=selfie-trim balanced_stage 25 results/weights/stage24 runs/s22wise/last results/eval/stage22-wise-s384.json 1

# A/B (results/README.md): small pastes (Copy-Paste of 5-50% of the crop, half the crops) against the selfie arm
# above, the same protocol and seeds.
for seed in 240 241; do
    ab24 selfie-trim "$seed" "runs/ab26-paste-$seed" \
        --copy-paste 0.5 --copy-paste-min-scale 0.05 --copy-paste-max-scale 0.5 &
done
wait
ab_score ab26-paste

# Stage 26 (results/README.md): stage 24's recipe from the shipped checkpoint (stage 22's average) instead of a soup.
mix=("${cats3[@]}")
FUSION=selfie-trim balanced_stage 26 checkpoints/segformer-b0-4class runs/s22wise/last \
    results/eval/stage22-wise-s384.json

# A/B (results/README.md): selfie-trim-vehicle (VOC's vehicles too) against the selfie arm above, the same protocol
# and seeds; both arms' everyday shares.
for seed in 240 241; do
    ab24 selfie-trim-vehicle "$seed" "runs/ab27-vehicle-$seed" &
done
wait
ab_score ab27-vehicle
for seed in 240 241; do
    for run in ab24-selfie ab27-vehicle; do
        "$PY" -m train.everyday --checkpoint "runs/$run-$seed/last" --working-short-side 384 \
            > "results/eval/everyday-$run-$seed.json"
    done
done

# Stage 27 (results/README.md): no training; stage 24's soup interpolated nearer the shipped weights (a third, and
# if that fails a quarter, of stage 24's soup: the shipped checkpoint listed two or three times).
shipped=checkpoints/segformer-b0-4class
"$PY" -m train.soup --checkpoints "$shipped" "$shipped" results/weights/stage24 --out runs/s27third/last
"$PY" -m train.evaluate --checkpoint runs/s27third/last --data "${raw[@]}" --working-short-side 384 --json \
    > results/eval/stage27-third-s384.json
"$PY" -m train.soup --checkpoints "$shipped" "$shipped" "$shipped" results/weights/stage24 --out runs/s27quarter/last
"$PY" -m train.evaluate --checkpoint runs/s27quarter/last --data "${raw[@]}" --working-short-side 384 --json \
    > results/eval/stage27-quarter-s384.json
"$PY" -m train.standing results/eval/stage22-wise-s384.json results/eval/stage27-third-s384.json \
    results/eval/stage27-quarter-s384.json results/eval/stage24-wise-s384.json results/teachers-val-384.json
# Neither passed by person/animal (ties at the fourth decimal); stage 22's average stays shipped.

# A/B (results/README.md): the three sources' person/animal weighted three times, against the selfie arm above,
# the same protocol and seeds.
for seed in 240 241; do
    ab24 selfie-trim "$seed" "runs/ab28-weighted-$seed" --folder-class-weights data/4class-384=1,1,3,1 &
done
wait
ab_score ab28-weighted

# A/B (results/README.md): VOC's vehicles in the everyday photos alone, against the selfie arm above, the same
# protocol and seeds.
for seed in 240 241; do
    ab24 selfie-trim "$seed" "runs/ab29-everyday-$seed" --folder-teachers data/everyday-384=selfie-trim-vehicle &
done
wait
ab_score ab29-everyday
for seed in 240 241; do
    "$PY" -m train.everyday --checkpoint "runs/ab29-everyday-$seed/last" --working-short-side 384 \
        > "results/eval/everyday-ab29-everyday-$seed.json"
done

# A/B (results/README.md): the street scenes' person/animal weighted three times, MSRC-v2's not. The three sources
# one folder each (the same files as data/4class-384; train.teach finds its targets already made where they are
# linked from there, or makes them).
prepare camvid-384 camvid="$DATASETS/camvid"
prepare msrc-v2-384 msrc-v2="$DATASETS/msrc-v2"
prepare sift-flow-384 sift-flow="$DATASETS/sift-flow"
"$PY" -m train.teach --data data/camvid-384 data/msrc-v2-384 data/sift-flow-384 --models "$MODELS" --workers 2
# data/4class-384 as its three sources' folders: the same images in the same order.
whole_folders=("${ab_folders[@]}")
split_folders=("${ab_folders[@]:0:5}" data/camvid-384 data/msrc-v2-384 data/sift-flow-384)
ab_folders=("${split_folders[@]}")
for seed in 240 241; do
    ab24 selfie-trim "$seed" "runs/ab30-street-$seed" \
        --folder-class-weights data/camvid-384=1,1,3,1 data/sift-flow-384=1,1,3,1 &
done
wait
ab_score ab30-street

# A/B (results/README.md): the selfie teacher on the new sources' photos alone, max-person elsewhere, against the
# selfie arm above, the same protocol and seeds.
ab_folders=("${whole_folders[@]}")
for seed in 240 241; do
    ab24 max-person "$seed" "runs/ab31-new-$seed" \
        --folder-teachers data/people-384=selfie-trim data/pets-384=selfie-trim &
done
wait
ab_score ab31-new

# A/B (results/README.md): CamVid's person/animal weighted twice, the other sources not, against the selfie arm.
ab_folders=("${split_folders[@]}")
for seed in 240 241; do
    ab24 selfie-trim "$seed" "runs/ab32-camvid-$seed" --folder-class-weights data/camvid-384=1,1,2,1 &
done
wait
ab_score ab32-camvid

# Stage 28 (results/README.md): stage 24's recipe from its soup with CamVid's person/animal weighted twice (the three
# sources as their own folders); the third candidate is a third of the soup, the shipped checkpoint listed twice.
# The second candidate (the soup averaged with stage 22's shipped average) passed and shipped.
mix=(data/camvid-384 data/msrc-v2-384 data/sift-flow-384 "${cats3[@]:1}")
extra=(--folder-class-weights data/camvid-384=1,1,2,1)
third_candidate() {  # STAGE SHIPPED BAR: a third of the stage's soup (SHIPPED listed twice), scored beside the others
    "$PY" -m train.soup --checkpoints "$2" "$2" "runs/s$1soup/last" --out "runs/s$1third/last"
    "$PY" -m train.evaluate --checkpoint "runs/s$1third/last" --data "${raw[@]}" --working-short-side 384 --json \
        > "results/eval/stage$1-third-s384.json"
    "$PY" -m train.standing "$3" results/eval/stage"$1"-{soup,wise,third}-s384.json results/teachers-val-384.json
}
FUSION=selfie-trim balanced_stage 28 results/weights/stage24 "$shipped" results/eval/stage22-wise-s384.json
third_candidate 28 "$shipped" results/eval/stage22-wise-s384.json
"$PY" -m train.export --run runs/s28soup --which last --out results/weights/stage28
"$PY" -m train.export --run runs/s28wise --which last --out "$shipped" --working-short-side 384

# Stage 29 (results/README.md): stage 28's soup continued with its recipe; the bar and the averages are stage 28's
# shipped average, kept as it shipped (runs/s28wise). No candidate passed (person/animal); stage 28's average stays
# shipped, and the soup's weights (weights/stage29) are kept to continue from.
FUSION=selfie-trim balanced_stage 29 results/weights/stage28 runs/s28wise/last results/eval/stage28-wise-s384.json
third_candidate 29 runs/s28wise/last results/eval/stage28-wise-s384.json
"$PY" -m train.export --run runs/s29soup --which last --out results/weights/stage29

# A/B (results/README.md): the teachers' targets at half weight, against the selfie arm, the same protocol and seeds.
ab_folders=("${whole_folders[@]}")
for seed in 240 241; do
    ab24 selfie-trim "$seed" "runs/ab33-half-$seed" --teacher-weight 0.5 &
done
wait
ab_score ab33-half
