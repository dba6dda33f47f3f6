"""Training, evaluation and export on real data: resume equivalence, DDP, overfitting, metrics by hand."""

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file
from torchmetrics.classification import MulticlassJaccardIndex

from segformer import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SegFormer,
    load_checkpoint,
    predict,
    preset,
    read_metadata,
    save_checkpoint,
)
from segformer.config import VARIANTS
from segformer.images import MAX_SIDE
from segformer.predict import normalise
from segformer.segmenter import Segmenter
from task.classes import CLASS_NAMES, IGNORE_INDEX, PALETTE
from task.curves import save_curves
from task.metrics import confusion_matrix, scores
from train import evaluate as evaluate_cli
from train.data import SegmentationFolder
from train.evaluate import combine, evaluate
from train.export import export
from train.losses import partial_cross_entropy
from train.paths import DATASETS_DIR as DATASETS
from train.prepare import prepare
from train.progress import progress
from train.soup import soup
from train.train import (
    TrainConfig,
    build_optimizer,
    class_weights,
    folder_class_weights,
    lr_factor,
    model_config,
    parse_args,
    segmentation_loss,
    train,
    training_set,
)

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("sift-flow", "msrc-v2", "camvid")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 train and 4 val images of each real source, short side 96."""
    out = tmp_path_factory.mktemp("data") / "tiny"
    prepare(out, 96, {name: DATASETS / name for name in SOURCES}, limit=4, workers=1)
    return out


def tiny_config(data: Path, out: Path, **changes: object) -> TrainConfig:
    base = dict(
        data=(str(data),),
        out=str(out),
        crop_size=64,
        batch_size=4,
        epochs=2,
        lr=1e-3,
        warmup_iters=2,
        workers=0,
        seed=3,
    )
    return TrainConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def trained_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "full"
    train(tiny_config(tiny_data, out))
    return out


def test_confusion_matrix_and_scores_match_a_hand_computed_example() -> None:
    target = torch.tensor([[0, 0, 1], [1, 2, IGNORE_INDEX]])
    pred = torch.tensor([[0, 1, 1], [1, 2, 3]])
    confusion = confusion_matrix(pred, target, 4)
    assert confusion.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    result = scores(confusion, list(CLASS_NAMES))
    # IoU = TP / (TP + FP + FN): background 1/2, plant 2/3, person/animal 1/1, vehicle absent (not averaged).
    assert result["per_class_iou"] == pytest.approx(
        {"background": 0.5, "plant": 2 / 3, "person/animal": 1.0, "vehicle": None}
    )
    assert result["miou"] == pytest.approx((0.5 + 2 / 3 + 1.0) / 3)
    assert result["pixel_acc"] == pytest.approx(4 / 5)  # the ignored pixel predicted as 3 does not count


def test_dataset_wide_miou_agrees_with_torchmetrics_on_real_labels() -> None:
    data = SegmentationFolder(DATASETS / "camvid", "val")
    generator = torch.Generator().manual_seed(0)
    metric = MulticlassJaccardIndex(num_classes=4, ignore_index=IGNORE_INDEX, average=None)
    confusion = torch.zeros(4, 4, dtype=torch.int64)
    for index in range(5):
        _, mask = data[index]
        mask = mask.as_subclass(torch.Tensor)
        # A prediction that is right on most pixels and wrong on a random 30%.
        noise = torch.randint(0, 4, mask.shape, generator=generator)
        pred = torch.where(torch.rand(mask.shape, generator=generator) < 0.3, noise, mask.clamp(max=3))
        confusion += confusion_matrix(pred, mask, 4)
        metric.update(pred[None], torch.where(mask < 4, mask, IGNORE_INDEX)[None])  # partial labels: left out
    ours = scores(confusion, list(CLASS_NAMES))["per_class_iou"]
    theirs = metric.compute().tolist()
    assert [ours[name] for name in CLASS_NAMES] == pytest.approx(theirs, abs=1e-6)


def test_named_recipes_set_defaults_that_flags_override() -> None:
    paper = parse_args(["--data", "d"])
    assert (paper.recipe, paper.lr, paper.head_lr_mult, paper.warmup_iters) == ("paper", 6e-5, 10.0, 1500)
    scratch = parse_args(["--recipe", "scratch", "--data", "d", "e"])
    assert (scratch.lr, scratch.head_lr_mult, scratch.warmup_iters, scratch.epochs) == (6e-4, 1.0, 350, 10)
    assert scratch.data == ("d", "e") and scratch.recipe == "scratch"
    mine = parse_args(["--recipe", "scratch", "--lr", "1e-4", "--copy-paste", "0.5"])
    assert (mine.lr, mine.head_lr_mult, mine.copy_paste) == (1e-4, 1.0, 0.5)


def test_design_variants_and_losses_are_options_of_a_run(tiny_data: Path, tmp_path: Path) -> None:
    cfg = parse_args(["--data", str(tiny_data), "--sr-ratios", "1", "1", "1", "1", "--decoder", "fpn"])
    assert model_config(cfg) == replace(preset("b0"), sr_ratios=(1, 1, 1, 1), decoder="fpn")
    recipe = {f.name: f.default for f in fields(TrainConfig)}
    assert all(recipe[variant.field] is None for variant in VARIANTS)  # every variant is a recipe field, unset
    cfg = parse_args(["--token-mixer", "dwconv", "--mlp-ratio", "6.5"])
    assert model_config(cfg) == replace(preset("b0"), token_mixer="dwconv", mlp_ratio=6.5)
    assert model_config(parse_args(["--data", "d"])) == preset("b0")  # no variant given: the paper's model
    record = train(tiny_config(tiny_data, tmp_path / "v", epochs=1, patch_merging="max_pool", loss="ce+lovasz"))
    model, meta = load_checkpoint(tmp_path / "v" / "last")
    assert model.config.patch_merging == "max_pool" and meta["recipe"]["loss"] == "ce+lovasz"
    assert np.isfinite(record["train_loss"])
    logits = torch.randn(1, 4, 8, 8)
    masks = torch.randint(0, 4, (1, 8, 8))
    both = segmentation_loss(logits, masks, None, "ce+lovasz")
    parts = segmentation_loss(logits, masks, None, "ce") + segmentation_loss(logits, masks, None, "lovasz")
    torch.testing.assert_close(both, parts)
    with pytest.raises(ValueError, match="unknown loss"):
        segmentation_loss(logits, masks, None, "dice")


def test_progress_prints_a_few_plain_lines_when_not_on_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    assert list(progress(range(1000), "evaluate", unit="images")) == list(range(1000))
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in lines] == [f"evaluate: {n}/1000 images" for n in (250, 500, 750, 1000)]


def test_lr_schedule_warms_up_linearly_then_decays_polynomially_to_zero() -> None:
    cfg = TrainConfig(warmup_iters=100)
    total = 10_000
    assert lr_factor(0, total, cfg) == pytest.approx(1e-6)
    assert lr_factor(50, total, cfg) == pytest.approx((0.5 + 0.5e-6) * (1 - 50 / total))
    assert lr_factor(100, total, cfg) == pytest.approx(1 - 100 / total)
    assert lr_factor(total, total, cfg) == 0.0
    assert lr_factor(50, 200, cfg) == pytest.approx(1 - 50 / 200)  # warmup capped at a tenth: over by step 20


def test_class_weights_follow_the_training_pixel_counts(tiny_data: Path) -> None:
    """Counted here from the label PNGs themselves: w_c = k / sqrt(f_c), with sum_c f_c w_c = 1."""
    counts = np.zeros(256, dtype=np.int64)
    for label in (tiny_data / "labels" / "train").glob("*.png"):
        counts += np.bincount(np.asarray(Image.open(label)).ravel(), minlength=256)
    frequency = counts[: len(CLASS_NAMES)] / counts[: len(CLASS_NAMES)].sum()
    expected = frequency**-0.5 / (frequency * frequency**-0.5).sum()
    torch.testing.assert_close(class_weights([str(tiny_data)], 0.5), torch.tensor(expected, dtype=torch.float32))
    assert class_weights([str(tiny_data)], 0.0) is None
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        class_weights([str(DATASETS / "camvid")], 0.5)


def test_class_weights_change_what_training_learns(tiny_data: Path, tmp_path: Path) -> None:
    plain = train(tiny_config(tiny_data, tmp_path / "plain", epochs=1))
    weighted = train(tiny_config(tiny_data, tmp_path / "weighted", epochs=1, class_weight_power=0.5))
    assert plain["train_loss"] != pytest.approx(weighted["train_loss"], rel=1e-3)
    recipe = load_checkpoint(tmp_path / "weighted" / "last")[1]["recipe"]
    assert recipe["class_weight_power"] == 0.5


def test_per_image_class_weights_weigh_each_image_as_cross_entropy_with_its_own() -> None:
    """A (B, C) weight is each image's own F.cross_entropy class weight; 'mean' divides by the summed weights."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 6, 7, generator=generator)
    labels = torch.randint(0, 4, (2, 6, 7), generator=generator)
    labels[0, 0, :3] = IGNORE_INDEX
    weight = torch.tensor([[1.0, 1.0, 3.0, 1.0], [0.5, 2.0, 1.0, 0.0]])
    total = partial_cross_entropy(logits, labels, weight=weight, reduction="sum")
    per_image = [
        F.cross_entropy(logits[b : b + 1], labels[b : b + 1], weight[b], ignore_index=IGNORE_INDEX, reduction="sum")
        for b in range(2)
    ]
    torch.testing.assert_close(total, sum(per_image))
    labelled = labels != IGNORE_INDEX
    summed = sum(weight[b][labels[b][labelled[b]]].sum() for b in range(2))
    torch.testing.assert_close(partial_cross_entropy(logits, labels, weight=weight), total / summed)
    # One row for every image is the (C,) weight.
    torch.testing.assert_close(
        partial_cross_entropy(logits, labels, weight=weight[:1].expand(2, -1)),
        partial_cross_entropy(logits, labels, weight=weight[0]),
    )


def test_folder_class_weights_reach_that_folders_images_and_the_loss(tiny_data: Path, tmp_path: Path) -> None:
    folder = str(tiny_data)
    factors = "1,1,5,1"
    items = training_set(tiny_config(tiny_data, tmp_path / "unused", folder_class_weights=(f"{folder}={factors}",)))
    assert len(items[0]) == 3  # image, mask, factors
    assert items[len(items) - 1][-1].tolist() == [1.0, 1.0, 5.0, 1.0]
    plain = train(tiny_config(tiny_data, tmp_path / "plain", epochs=1))
    # The same factor on every class changes no step: a weighted mean.
    uniform = train(tiny_config(tiny_data, tmp_path / "uniform", epochs=1, folder_class_weights=(f"{folder}=2,2,2,2",)))
    assert uniform["train_loss"] == pytest.approx(plain["train_loss"], rel=1e-5)
    weighted = train(
        tiny_config(tiny_data, tmp_path / "weighted", epochs=1, folder_class_weights=(f"{folder}={factors}",))
    )
    assert weighted["train_loss"] != pytest.approx(plain["train_loss"], rel=1e-3)
    recipe = load_checkpoint(tmp_path / "weighted" / "last")[1]["recipe"]
    assert recipe["folder_class_weights"] == [f"{folder}={factors}"]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("data/other=1,1,2,1", "is not one of --data"),
        ("{folder}=1,1,2", "a weight >= 0 for each of"),
        ("{folder}=1,1,-2,1", "a weight >= 0 for each of"),
        ("{folder}=1,1,two,1", "a weight >= 0 for each of"),
        ("{folder}", "a weight >= 0 for each of"),
    ],
)
def test_folder_class_weights_refuse_what_they_cannot_apply(tiny_data: Path, entry: str, message: str) -> None:
    cfg = tiny_config(tiny_data, Path("unused"), folder_class_weights=(entry.format(folder=tiny_data),))
    with pytest.raises(ValueError, match=message):
        folder_class_weights(cfg)
    twice = tiny_config(tiny_data, Path("unused"), folder_class_weights=(f"{tiny_data}=1,1,1,1",) * 2)
    with pytest.raises(ValueError, match="given twice"):
        folder_class_weights(twice)


def test_decoder_head_learns_at_ten_times_the_rate_and_norms_skip_weight_decay() -> None:
    model = SegFormer.from_preset("b0", 4)
    optimizer = build_optimizer(model, TrainConfig())
    by_param = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert by_param[id(named["decoder.fuse.weight"])]["lr"] == pytest.approx(6e-4)
    assert by_param[id(named["encoder.blocks.0.0.attention.query.weight"])]["lr"] == pytest.approx(6e-5)
    assert by_param[id(named["encoder.blocks.0.0.norm1.weight"])]["weight_decay"] == 0.0
    assert by_param[id(named["encoder.blocks.0.0.attention.query.weight"])]["weight_decay"] == 0.01


def test_training_writes_checkpoints_history_and_curves(trained_run: Path) -> None:
    model, meta = load_checkpoint(trained_run / "last")
    assert [h["epoch"] for h in meta["history"]] == [1, 2]
    for record in meta["history"]:
        assert set(record["val_per_class_iou"]) == set(CLASS_NAMES)
        assert 0.0 <= record["val_miou"] <= 1.0 and record["train_loss"] > 0 and record["val_loss"] > 0
    assert meta["classes"] == list(CLASS_NAMES) and meta["recipe"]["crop_size"] == 64
    assert (trained_run / "best.safetensors").is_file() and (trained_run / "curves.png").stat().st_size > 10_000
    assert not [p for p in trained_run.iterdir() if p.name.endswith(".tmp")]


def test_two_epochs_equal_one_epoch_plus_resume(tiny_data: Path, trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "resumed"
    train(tiny_config(tiny_data, out, stop_after=1))
    assert len(json.loads((out / "last.json").read_text())["history"]) == 1
    train(tiny_config(tiny_data, out, resume=True))
    full, resumed = load_file(trained_run / "last.safetensors"), load_file(out / "last.safetensors")
    for key in full:
        torch.testing.assert_close(resumed[key], full[key], rtol=0, atol=1e-6, msg=key)
    full_history = json.loads((trained_run / "last.json").read_text())["history"]
    resumed_history = json.loads((out / "last.json").read_text())["history"]
    assert len(resumed_history) == len(full_history) == 2
    for resumed_record, full_record in zip(resumed_history, full_history, strict=True):
        for key, value in full_record.items():
            if key in ("val_iou_with_partial_per_source", "val_miou_per_source"):  # {source: scores}
                for source, scores_ in value.items():
                    assert resumed_record[key][source] == pytest.approx(scores_), (key, source)
            elif key not in ("train_images_per_s", "epoch_seconds"):  # timings
                assert resumed_record[key] == pytest.approx(value), key


def test_resume_refuses_changed_settings_and_fresh_run_refuses_existing_output(
    tiny_data: Path, trained_run: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    with pytest.raises(ValueError, match="lr"):
        train(tiny_config(tiny_data, copy, resume=True, lr=5e-3))
    with pytest.raises(ValueError, match="--resume"):
        train(tiny_config(tiny_data, copy))


def test_overfits_a_handful_of_real_images(tmp_path: Path) -> None:
    """Four real MSRC-v2 images, no augmentation: the model must learn them nearly perfectly."""
    torch.manual_seed(0)
    data = SegmentationFolder(DATASETS / "msrc-v2", "train")
    pairs = [data[i] for i in range(4)]
    size = (64, 96)
    images = torch.stack([F.interpolate(im[None].float(), size=size, mode="bilinear")[0] for im, _ in pairs])
    masks = torch.stack([F.interpolate(m[None, None].float(), size=size, mode="nearest")[0, 0] for _, m in pairs])
    masks = masks.long()
    model = SegFormer.from_preset("b0", 4)
    cfg = TrainConfig(lr=1e-3, head_lr_mult=1.0, weight_decay=0.0)
    optimizer = build_optimizer(model, cfg)
    x = normalise(images, IMAGENET_MEAN, IMAGENET_STD)
    for _ in range(150):
        logits = F.interpolate(model(x), size=size, mode="bilinear", align_corners=False)
        loss = F.cross_entropy(logits, masks, ignore_index=IGNORE_INDEX)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        pred = F.interpolate(model(x), size=size, mode="bilinear", align_corners=False).argmax(1)
    result = scores(confusion_matrix(pred, masks, 4), list(CLASS_NAMES))
    assert result["miou"] > 0.9, result


def test_evaluate_cli_maps_raw_source_folders_like_prepared_ones(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A raw source folder (mapped by class names) and its prepared copy score the same."""
    prepared = tmp_path / "msrc"
    prepare(prepared, 256, {"msrc-v2": DATASETS / "msrc-v2"}, limit=59, workers=1)  # 213 px: no resize
    results = []
    for folder in (DATASETS / "msrc-v2", prepared):
        evaluate_cli.main(["--checkpoint", str(trained_run / "best"), "--data", str(folder), "--json"])
        results.append(json.loads(capsys.readouterr().out))
    raw, prep = results
    assert raw["images"] == prep["images"] == 59
    assert set(raw["per_class_iou"]) == set(CLASS_NAMES)
    assert raw["miou"] == pytest.approx(prep["miou"]) and raw["pixel_acc"] == pytest.approx(prep["pixel_acc"])


def test_evaluate_cli_scores_several_folders_each_and_together(
    trained_run: Path, tiny_data: Path, capsys: pytest.CaptureFixture
) -> None:
    """With several --data folders, each is scored as on its own and "overall" sums their confusion matrices."""
    folders = [str(DATASETS / "msrc-v2"), str(tiny_data)]
    checkpoint = ["--checkpoint", str(trained_run / "best"), "--json"]
    singles = []
    for folder in folders:
        evaluate_cli.main([*checkpoint, "--data", folder])
        singles.append(json.loads(capsys.readouterr().out))
    evaluate_cli.main([*checkpoint, "--data", *folders])
    report = json.loads(capsys.readouterr().out)
    assert list(report["per_source"]) == folders
    for single, folder in zip(singles, folders, strict=True):
        assert report["per_source"][folder]["confusion"] == single["confusion"]
    summed = np.array(singles[0]["confusion"]) + np.array(singles[1]["confusion"])
    assert report["overall"]["confusion"] == summed.tolist()
    assert report["overall"]["images"] == 59 + 12
    diagonal, rows, cols = np.diag(summed), summed.sum(1), summed.sum(0)
    by_hand = [d / (r + c - d) for d, r, c in zip(diagonal, rows, cols, strict=True) if r + c > 0]
    assert report["overall"]["miou"] == pytest.approx(np.mean(by_hand))
    evaluate_cli.main(checkpoint[:2] + ["--data", *folders])
    table = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in table[1:4]] == [*folders, "overall"]
    # then a line per row with partial labels (the tiny data's SIFT Flow field pixels), none for MSRC-v2
    assert [line.split(": ")[0] for line in table[4:]] == [str(tiny_data), "overall"]
    assert "pixels with a partial label" in table[4]


def test_evaluate_cli_swaps_the_ffn_padding_without_retraining(
    trained_run: Path, tiny_data: Path, capsys: pytest.CaptureFixture
) -> None:
    reports = {}
    for padding in ("zeros", "reflect"):
        evaluate_cli.main(
            ["--checkpoint", str(trained_run / "best"), "--json", "--data", str(tiny_data), "--ffn-padding", padding]
        )
        reports[padding] = json.loads(capsys.readouterr().out)
    assert reports["reflect"]["ffn_padding"] == "reflect" and reports["zeros"]["ffn_padding"] == "zeros"
    assert reports["reflect"]["confusion"] != reports["zeros"]["confusion"]  # the border pixels change


def test_evaluate_cli_scores_at_the_checkpoint_working_scale(
    trained_run: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A checkpoint's working_short_side is evaluate's default scale, and it scores what predict() predicts at that
    scale; --working-short-side 0 scores each image at its own size, as a checkpoint without one."""
    model, meta = load_checkpoint(trained_run / "best")
    scaled = tmp_path / "scaled"
    save_checkpoint(scaled, model, {**meta, "working_short_side": 160})
    runs = {"own": (trained_run / "best", []), "scaled": (scaled, []), "zero": (scaled, ["--working-short-side", "0"])}
    reports = {}
    for name, (checkpoint, extra) in runs.items():
        evaluate_cli.main(["--checkpoint", str(checkpoint), "--json", "--data", str(tiny_data), *extra])
        reports[name] = json.loads(capsys.readouterr().out)
    assert [reports[name]["working_short_side"] for name in runs] == [None, 160, None]
    assert reports["zero"]["confusion"] == reports["own"]["confusion"]
    assert reports["scaled"]["confusion"] != reports["own"]["confusion"]
    dataset = SegmentationFolder(tiny_data, "val")
    by_hand = torch.zeros(4, 4, dtype=torch.int64)
    for index in range(len(dataset)):
        image, mask = dataset[index]
        labels = predict(model, image, mean=meta["mean"], std=meta["std"], max_side=MAX_SIDE, short_side=160)
        keep = mask < len(CLASS_NAMES)  # single-class pixels only: no ignore, no partial label
        by_hand += torch.bincount(4 * mask[keep] + labels[keep].long(), minlength=16).reshape(4, 4)
    assert reports["scaled"]["confusion"] == by_hand.tolist()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "no/such/folder"], "no/such/folder"),
        (["--checkpoint", "no/such/checkpoint"], "no/such/checkpoint"),
    ],
)
def test_evaluate_cli_names_what_is_missing(trained_run: Path, args: list[str], message: str) -> None:
    base = {"--checkpoint": str(trained_run / "best"), "--data": str(DATASETS / "msrc-v2")}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    with pytest.raises(SystemExit, match=message):
        evaluate_cli.main([item for pair in base.items() for item in pair])


def test_ddp_on_two_cpu_processes_matches_single_process_evaluation(tiny_data: Path, tmp_path: Path) -> None:
    """torchrun with 2 gloo ranks trains, only rank 0 writes, and the reduced metrics equal a 1-process eval."""
    out = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "train.train", "--data", str(tiny_data), "--out", str(out), "--epochs", "1", "--crop-size", "64",
        "--batch-size", "2", "--workers", "0",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    model, meta = load_checkpoint(out / "last")
    assert meta["recipe"]["world_size"] == 2 and len(meta["history"]) == 1
    segmenter = Segmenter(model, CLASS_NAMES, PALETTE, max_side=None)
    per_source = [evaluate(segmenter, SegmentationFolder(tiny_data, "val"), show_progress=False)]
    single = combine(per_source, CLASS_NAMES)
    assert meta["history"][0]["val_miou"] == pytest.approx(single["miou"], abs=1e-9)
    assert meta["history"][0]["val_loss"] == pytest.approx(single["loss"], rel=1e-5)


def test_export_writes_fp16_under_10_mb_that_predicts_like_the_original(trained_run: Path, tmp_path: Path) -> None:
    weights = export(trained_run, tmp_path / "shipped")
    assert weights.stat().st_size < 10 * 2**20
    assert all(t.dtype in (torch.float16, torch.int64) for t in load_file(weights).values())
    original, _ = load_checkpoint(trained_run / "best")
    shipped, meta = load_checkpoint(tmp_path / "shipped")
    assert meta["dtype"] == "float16" and meta["history"] == load_checkpoint(trained_run / "best")[1]["history"]
    assert meta["exported_from"] == (trained_run / "best").as_posix()  # names the report that scored these weights
    assert "working_short_side" not in meta  # each image at its own size unless a scale is chosen
    export(trained_run, tmp_path / "scaled", working_short_side=384)
    assert read_metadata(tmp_path / "scaled")["working_short_side"] == 384
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        torch.testing.assert_close(shipped(x), original(x), atol=2e-2, rtol=1e-2)


def test_exported_curves_end_at_the_epoch_of_the_exported_weights(trained_run: Path, tmp_path: Path) -> None:
    """A best checkpoint from epoch 1 of 2 ships the curves of epoch 1, not the run's curves.png (2 epochs)."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    best = json.loads((run / "best.json").read_text())
    (run / "best.json").write_text(json.dumps({**best, "history": best["history"][:1]}))
    export(run, tmp_path / "shipped")
    save_curves(best["history"][:1], tmp_path / "expected.png")
    assert (tmp_path / "shipped.curves.png").read_bytes() == (tmp_path / "expected.png").read_bytes()


def test_soup_averages_every_float_tensor_of_its_ingredients_and_records_them(
    tiny_data: Path, trained_run: Path, tmp_path: Path
) -> None:
    """Two runs from one starting point (plain and class-weighted): the soup is their element-wise mean."""
    weighted = tmp_path / "weighted"
    train(tiny_config(tiny_data, weighted, epochs=1, class_weight_power=0.25, init=str(trained_run / "last")))
    ingredients = [trained_run / "last", weighted / "last"]
    weights = soup(ingredients, tmp_path / "soup" / "best")
    a, b = (load_file(path.with_suffix(".safetensors")) for path in ingredients)
    mixed = load_file(weights)
    assert mixed.keys() == a.keys()
    for name, tensor in mixed.items():
        expected = (a[name] + b[name]) / 2 if tensor.is_floating_point() else a[name]
        torch.testing.assert_close(tensor, expected, rtol=0, atol=1e-7)
    assert any(not torch.equal(a[name], b[name]) for name in a)  # the two ingredients really differ
    model, meta = load_checkpoint(tmp_path / "soup" / "best")
    histories = [json.loads(path.with_suffix(".json").read_text())["history"] for path in ingredients]
    assert [part["checkpoint"] for part in meta["soup"]] == [str(path) for path in ingredients]
    assert [part["history"] for part in meta["soup"]] == histories and meta["history"] == histories[0]
    # Averaged again with one of its ingredients (WiSE-FT's interpolation), the soup keeps its own ingredients.
    again = load_checkpoint(soup([tmp_path / "soup" / "best", trained_run / "last"], tmp_path / "wise" / "best"))[1]
    assert again["soup"][0]["soup"] == meta["soup"] and "soup" not in again["soup"][1]
    result = evaluate(Segmenter(model, CLASS_NAMES, PALETTE), SegmentationFolder(tiny_data, "val"), show_progress=False)
    assert result["images"] == 12 and 0 <= result["miou"] <= 1


def test_soup_refuses_checkpoints_that_cannot_be_averaged(trained_run: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copy(trained_run / "last.safetensors", other.with_suffix(".safetensors"))
    meta = json.loads((trained_run / "last.json").read_text())
    other.with_suffix(".json").write_text(json.dumps({**meta, "classes": ["a", "b", "c", "d"]}))
    with pytest.raises(ValueError, match="differs .* in classes"):
        soup([trained_run / "last", other], tmp_path / "out" / "best")
    with pytest.raises(ValueError, match="at least two"):
        soup([trained_run / "last"], tmp_path / "out" / "best")
    assert not (tmp_path / "out").exists()


def test_init_from_a_checkpoint_continues_its_history(tiny_data: Path, trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "continued"
    train(tiny_config(tiny_data, out, epochs=1, init=str(trained_run / "last")))
    _, meta = load_checkpoint(out / "last")
    earlier = json.loads((trained_run / "last.json").read_text())["history"]
    assert [h["epoch"] for h in meta["history"]] == [1, 2, 3] and meta["inherited_epochs"] == 2
    assert meta["history"][:2] == earlier and meta["recipe"]["init"] == str(trained_run / "last")
    with pytest.raises(ValueError, match="different model"):
        train(tiny_config(tiny_data, tmp_path / "other", preset="b1", init=str(trained_run / "last")))


def test_frozen_encoder_from_a_checkpoint_trains_only_a_new_decoder(
    tiny_data: Path, trained_run: Path, tmp_path: Path
) -> None:
    start, _ = load_checkpoint(trained_run / "last")
    out = tmp_path / "frozen"
    train(
        tiny_config(
            tiny_data, out, epochs=1, init=str(trained_run / "last"), init_encoder_only=True, freeze_encoder=True,
            decoder="fpn", decoder_dim=32,
        )
    )  # fmt: skip
    model, meta = load_checkpoint(out / "last")
    assert model.config.decoder == "fpn" and meta["inherited_epochs"] == 0 and len(meta["history"]) == 1
    for name, value in start.encoder.state_dict().items():
        torch.testing.assert_close(model.encoder.state_dict()[name], value, rtol=0, atol=0, msg=name)
    fresh = SegFormer(model.config, len(CLASS_NAMES))
    assert not torch.equal(model.decoder.classifier.weight, fresh.decoder.classifier.weight)
    with pytest.raises(ValueError, match="encoder is a different design"):
        train(tiny_config(tiny_data, tmp_path / "x", init=str(trained_run / "last"), init_encoder_only=True,
                          patch_merging="max_pool"))  # fmt: skip


def test_base_size_sets_the_scale_of_the_random_resize_apart_from_the_crop(tiny_data: Path) -> None:
    cfg = parse_args(["--data", str(tiny_data), "--crop-size", "64"])
    assert training_set(cfg).datasets[0].transform.transforms[0].min_size == 32  # 0.5 x the crop
    [resize, crop, *_] = training_set(replace(cfg, base_size=256)).datasets[0].transform.transforms
    assert (resize.min_size, resize.max_size, crop.size) == (128, 513, (64, 64))


def test_gpu_recipe_fits_its_epochs_to_the_budget_and_writes_the_export(
    tiny_data: Path, trained_run: Path, tmp_path: Path
) -> None:
    """train/recipes/gpu.sh (run on the CPU, on tiny data): probe, fitted run, fp16 export at the working scale,
    files in OUT."""
    out = tmp_path / "out"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHON": sys.executable,
        "DATA": str(tiny_data),
        "INIT": str(trained_run / "best"),
        "BATCH": "4",
        "WORKERS": "0",
        "BUDGET_S": "45",
        "OUT": str(out),
        "RUNS": str(tmp_path / "runs"),
    }
    done = subprocess.run(
        ["bash", "train/recipes/gpu.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == [
        "last.json", "log.txt", "segformer-b0-4class.curves.png", "segformer-b0-4class.json",
        "segformer-b0-4class.safetensors", "stderr-tail.txt",
    ]  # fmt: skip
    probe = re.search(
        r"^probe: ([\d.]+) s an epoch; (-?\d+) s left -> (\d+) epochs$", (out / "log.txt").read_text(), re.M
    )
    assert probe is not None
    epoch_s, left, epochs = float(probe[1]), int(probe[2]), int(probe[3])
    assert epochs == max(1, int(left / epoch_s)) and left + 30 <= 45
    _, meta = load_checkpoint(out / "segformer-b0-4class")
    run = json.loads((out / "last.json").read_text())
    assert meta["dtype"] == "float16" and run["recipe"]["epochs"] == epochs >= 1
    assert meta["working_short_side"] == 384  # the shipped checkpoint's working scale, kept
    assert len(run["history"]) == 2 + epochs and run["inherited_epochs"] == 2  # continues INIT's 2 epochs
    assert meta["history"] == run["history"][: len(meta["history"])]
