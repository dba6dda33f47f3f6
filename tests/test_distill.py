"""Feature hints on real images: the teacher's features, the hint stage (train.train's ``distill`` recipe, python -m
train.distill) learning, its output checkpoint, resume and errors, and the hints beside the segmentation loss."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torchvision.transforms import v2

from experiments.ablate import Arm
from experiments.ablate import distilled as ablate_distilled
from segformer import IMAGENET_MEAN, IMAGENET_STD, SegFormer, load_checkpoint, save_checkpoint
from segformer.checkpoint import save_tensors
from segformer.predict import normalise, upsample_logits
from train.data import SegmentationFolder, collate, train_transform
from train.distill import main
from train.hints import TEACHER_MEAN, TEACHER_STD, load_teacher, projections, stage_losses, teacher_features
from train.paths import DATASETS_DIR
from train.prepare import prepare
from train.runs import save_training_state
from train.train import (
    TrainConfig,
    from_recipe,
    initialise,
    lr_factor,
    segmentation_loss,
    start_or_resume,
    train,
    train_one_epoch,
)

MSRC = DATASETS_DIR / "msrc-v2"
# ImageNet-1k class ids: 281-285 domestic cats (tabby, tiger cat, Persian, Siamese, Egyptian); cars and their parts.
CATS = {281, 282, 283, 284, 285}
CARS = {407, 436, 468, 511, 575, 581, 609, 627, 656, 661, 717, 734, 751, 817}


def read_image(path: Path) -> torch.Tensor:
    with Image.open(path) as im:
        return torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)


@pytest.fixture(scope="module")
def teacher() -> torch.nn.Module:
    return load_teacher()


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 train and 8 val MSRC-v2 images, short side 64."""
    out = tmp_path_factory.mktemp("data") / "tiny"
    prepare(out, 64, {"msrc-v2": MSRC}, limit=8, workers=1)
    return out


def tiny_config(data: Path, out: Path, **changes: object) -> TrainConfig:
    base = dict(data=(str(data),), out=str(out), crop_size=64, batch_size=4, epochs=2, workers=0, seed=5)
    return from_recipe("distill", **{**base, **changes})


@pytest.fixture(scope="module")
def distilled(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "distill"
    train(tiny_config(tiny_data, out))
    return out


def test_teacher_features_have_24_40_112_320_channels_at_strides_4_to_32_on_the_students_grids(
    teacher: torch.nn.Module,
) -> None:
    image = read_image(MSRC / "images" / "train" / "7_11_s.jpg")[None]
    for height, width in ((200, 160), (97, 75)):  # odd sizes: both networks round every stride-2 step up
        crop = image[..., :height, :width]
        features = teacher_features(teacher, crop)
        assert [tuple(f.shape[1:]) for f in features] == [
            (c, -(-height // s), -(-width // s)) for c, s in zip((24, 40, 112, 320), (4, 8, 16, 32), strict=True)
        ]
        student, _ = SegFormer.from_preset("b0", 4).encoder(normalise(crop, IMAGENET_MEAN, IMAGENET_STD))
        assert [f.shape[-2:] for f in student] == [f.shape[-2:] for f in features]


def test_teacher_classifies_real_cats_as_cats_and_cars_as_cars(teacher: torch.nn.Module) -> None:
    """Its weights and input normalisation are right: ImageNet top-1 on MSRC-v2 photos (resize 256, crop 224)."""
    photos = {"15_17_s": CATS, "15_20_s": CATS, "15_22_s": CATS, "7_11_s": CARS, "7_15_s": CARS, "7_25_s": CARS}
    resize = v2.Compose([v2.Resize(256, antialias=True), v2.CenterCrop(224)])
    images = torch.stack([resize(read_image(MSRC / "images" / "train" / f"{stem}.jpg")) for stem in photos])
    with torch.no_grad():
        top1 = teacher(normalise(images, TEACHER_MEAN, TEACHER_STD)).argmax(1).tolist()
    assert [label in expected for label, expected in zip(top1, photos.values(), strict=True)] == [True] * len(photos)


def test_lr_warms_up_linearly_then_decays_as_a_cosine_to_zero() -> None:
    cfg = from_recipe("distill", warmup_iters=50)
    assert lr_factor(0, 1000, cfg) == pytest.approx(1e-6)
    assert lr_factor(25, 1000, cfg) == pytest.approx(0.5, abs=1e-6)
    assert lr_factor(50, 1000, cfg) == pytest.approx(1.0)
    assert lr_factor(50 + 475, 1000, cfg) == pytest.approx(0.5)
    assert lr_factor(1000, 1000, cfg) == pytest.approx(0.0)
    assert lr_factor(1, 20, cfg) == pytest.approx(0.5, abs=1e-6)  # warmup capped at a tenth of the steps


def test_distillation_lowers_the_loss(distilled: Path, tiny_data: Path, teacher: torch.nn.Module) -> None:
    history = load_checkpoint(distilled / "last")[1]["distillation"]["history"]
    assert [h["epoch"] for h in history] == [1, 2] and history[1]["train_loss"] < history[0]["train_loss"]
    assert all(h["train_loss"] == h["train_hint_loss"] for h in history)  # the hint loss alone, at weight 1
    # And on one fixed batch of real images: the distilled student against the untrained one it started from.
    images = torch.stack([read_image(p)[:, :64, :64] for p in sorted((tiny_data / "images" / "train").iterdir())])
    targets = teacher_features(teacher, images)
    x = normalise(images, IMAGENET_MEAN, IMAGENET_STD)
    torch.manual_seed(5)
    untrained = SegFormer.from_preset("b0", 4).eval()
    untrained_projections = projections(untrained.config.widths)
    trained = load_checkpoint(distilled / "last")[0]
    trained_projections = projections(trained.config.widths)
    trained_projections.load_state_dict(load_file(distilled / "last-projections.safetensors"))
    with torch.no_grad():
        before = stage_losses(untrained.encoder(x)[0], targets, untrained_projections)
        after = stage_losses(trained.encoder(x)[0], targets, trained_projections)
    assert after.mean() < 0.8 * before.mean()


def test_output_is_a_segformer_checkpoint_that_train_init_starts_a_fresh_history_from(
    distilled: Path, tiny_data: Path, tmp_path: Path
) -> None:
    model, meta = load_checkpoint(distilled / "last")
    assert "history" not in meta and meta["num_classes"] == 4 and meta["mean"] == list(IMAGENET_MEAN)
    record = meta["distillation"]
    assert record["teacher"]["licence"] == "Apache-2.0" and record["teacher"]["features"]["channels"] == [
        24,
        40,
        112,
        320,
    ]
    assert record["recipe"]["crop_size"] == 64 and len(record["history"]) == 2
    assert not (distilled / "best.json").exists() and not (distilled / "curves.png").exists()  # nothing validated
    torch.manual_seed(5)
    fresh = SegFormer.from_preset("b0", 4)  # the decoder does not train: it is the one the seed initialised
    for key, value in fresh.decoder.state_dict().items():
        torch.testing.assert_close(model.decoder.state_dict()[key], value, rtol=0, atol=0)

    start = SegFormer.from_preset("b0", 4)
    assert initialise(start, str(distilled / "last")) == []
    for key, value in model.encoder.state_dict().items():
        torch.testing.assert_close(start.encoder.state_dict()[key], value, rtol=0, atol=0)
    out = tmp_path / "train"
    init = str(distilled / "last")
    train(TrainConfig(data=(str(tiny_data),), out=str(out), init=init, crop_size=64, batch_size=4, epochs=1, workers=0))
    trained = json.loads((out / "last.json").read_text())
    assert [h["epoch"] for h in trained["history"]] == [1] and trained["inherited_epochs"] == 0


def test_two_epochs_equal_one_epoch_plus_resume(distilled: Path, tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "resumed"
    train(tiny_config(tiny_data, out, stop_after=1))
    assert len(json.loads((out / "last.json").read_text())["distillation"]["history"]) == 1
    main(
        ["--data", str(tiny_data), "--out", str(out), "--crop-size", "64", "--batch-size", "4", "--epochs", "2"]
        + ["--workers", "0", "--seed", "5", "--resume"]
    )  # the command line continues it
    for name in ("last.safetensors", "last-projections.safetensors", "last-optimizer.safetensors"):
        full, resumed = load_file(distilled / name), load_file(out / name)
        for key in full:
            torch.testing.assert_close(resumed[key], full[key], rtol=0, atol=1e-6, msg=f"{name}: {key}")
    full_history = json.loads((distilled / "last.json").read_text())["distillation"]["history"]
    resumed_history = json.loads((out / "last.json").read_text())["distillation"]["history"]
    for resumed_record, full_record in zip(resumed_history, full_history, strict=True):
        assert resumed_record["train_hint_loss"] == pytest.approx(full_record["train_hint_loss"])


def test_resume_refuses_changed_settings_and_fresh_run_refuses_existing_output(
    distilled: Path, tiny_data: Path
) -> None:
    with pytest.raises(ValueError, match="lr"):
        train(tiny_config(tiny_data, distilled, resume=True, lr=5e-3))
    with pytest.raises(ValueError, match="--resume"):
        train(tiny_config(tiny_data, distilled))


def test_missing_folder_or_teacher_package_is_a_one_line_error(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SystemExit, match=r"^error: dataset folder not found: .*nowhere$"):
        main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")])
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)
    with pytest.raises(
        SystemExit, match=r"^error: .*efficientnet_lite_pytorch.*pip install -r requirements-distill.txt$"
    ):
        main(["--data", str(tiny_data), "--out", str(tmp_path / "run")])


def test_a_hint_stage_written_before_the_loops_merged_still_serves_init_and_the_arms(tmp_path: Path) -> None:
    """A folder in the layout the separate distillation loop wrote (its recipe and history keys) is still a finished
    distillation to experiments.ablate and a start for train.train --init; resuming it is refused in one line, as
    its optimizer state has that loop's two parameter groups."""
    torch.manual_seed(0)
    model, project = SegFormer.from_preset("b0", 4), projections((32, 64, 160, 256))
    recipe = dict(data=["data/4class-256"], out="runs/ablate/distilled-s0-distill", preset="b0", crop_size=128)
    recipe |= dict(batch_size=16, epochs=2, lr=1e-3, weight_decay=0.05, warmup_iters=500, workers=1, seed=0)
    recipe |= dict(resume=False, stop_after=None, device="cpu")
    epoch = dict(loss=0.5, loss_per_stage=[0.4, 0.5, 0.5, 0.6], lr=1e-4, images_per_s=9.0, epoch_seconds=60.0)
    history = [{"epoch": 1, "step": 10, **epoch}, {"epoch": 2, "step": 20, **epoch}]
    out = tmp_path / "ablate" / "distilled-s0-distill"
    meta = {"preset": "b0", "classes": ["background", "plant", "person/animal", "vehicle"], "input_size": 128}
    save_checkpoint(out / "last", model, {**meta, "distillation": {"recipe": recipe, "history": history}})
    params = [p for module in (model.encoder, project) for p in module.parameters()]
    old = torch.optim.AdamW(
        [{"params": [p for p in params if p.ndim > 1]}, {"params": [p for p in params if p.ndim <= 1]}]
    )
    save_training_state(out / "last-optimizer", old, 2, 20)
    save_tensors(out / "last-projections.safetensors", project.state_dict())

    arm = Arm("distilled", "levers: distillation", "scratch", distill=("--epochs", "2"))
    assert ablate_distilled(arm, 0, tmp_path / "ablate")["history"] == history
    start = SegFormer.from_preset("b0", 4)
    assert initialise(start, str(out / "last")) == []
    torch.testing.assert_close(start.state_dict(), model.state_dict(), rtol=0, atol=0)
    with pytest.raises(ValueError, match="optimizer state does not fit"):
        start_or_resume(
            from_recipe("distill", out=str(out), crop_size=128, epochs=2, resume=True), torch.device("cpu"), 1
        )


def joint_config(data: Path, out: Path, **changes: object) -> TrainConfig:
    base = dict(data=(str(data),), out=str(out), crop_size=64, batch_size=4, epochs=2, workers=0, seed=5)
    return TrainConfig(**{**base, "lr": 1e-3, "warmup_iters": 2, "distill_weight": 0.5, **changes})


def test_a_distill_weight_adds_that_multiple_of_the_hint_loss_to_the_segmentation_loss(
    tiny_data: Path, tmp_path: Path
) -> None:
    cfg = joint_config(tiny_data, tmp_path / "step")
    folder = SegmentationFolder(tiny_data, "train", train_transform(64))
    torch.manual_seed(0)
    batch = collate([folder[i] for i in range(4)])
    run = start_or_resume(cfg, torch.device("cpu"), 1)
    # The same step by hand, before the model moves: drop path draws the same under the same seed.
    torch.manual_seed(1)
    images = normalise(batch[0], IMAGENET_MEAN, IMAGENET_STD)
    run.model.train()
    features, _ = run.model.encoder(images)
    logits = run.model.decoder(features)
    expected_segmentation = segmentation_loss(upsample_logits(logits, batch[1].shape[-2:]), batch[1], None, "ce")
    expected_hint = run.hints.loss(features, batch[0])
    scheduler = torch.optim.lr_scheduler.LambdaLR(run.optimizer, lambda _: 1.0)
    before = [p.detach().clone() for p in run.hints.project.parameters()]

    torch.manual_seed(1)
    loss, batches, hint, _ = train_one_epoch(run, [batch], scheduler, None, cfg, torch.device("cpu"), "", show=False)

    assert batches == 1 and hint.item() == pytest.approx(expected_hint.item(), rel=1e-5)
    assert loss.item() == pytest.approx(expected_segmentation.item() + 0.5 * expected_hint.item(), rel=1e-5)
    assert all((a != b).any() for a, b in zip(before, run.hints.project.parameters(), strict=True))  # they learn


def test_training_with_a_distill_weight_records_its_teacher_and_resumes_exactly(
    tiny_data: Path, tmp_path: Path
) -> None:
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    train(joint_config(tiny_data, full))
    train(joint_config(tiny_data, resumed, stop_after=1))
    train(joint_config(tiny_data, resumed, resume=True))
    meta = json.loads((full / "last.json").read_text())
    assert meta["teacher"]["name"] == "EfficientNet-Lite0 (ImageNet-1k)" and meta["recipe"]["distill_weight"] == 0.5
    assert all(h["train_hint_loss"] > 0 for h in meta["history"])
    for name in ("last.safetensors", "last-projections.safetensors", "last-optimizer.safetensors"):
        expected, got = load_file(full / name), load_file(resumed / name)
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-6, msg=f"{name}: {key}")
    resumed_history = json.loads((resumed / "last.json").read_text())["history"]
    assert [h["train_hint_loss"] for h in resumed_history] == pytest.approx(
        [h["train_hint_loss"] for h in meta["history"]]
    )
