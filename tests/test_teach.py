"""Teacher targets (train.teach, train.teacher_targets) and the pixel-wise distillation loss (train.losses.teacher_kl),
on the real teachers and real images."""

import importlib.util
import io
import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import IN_CI
from PIL import Image

from segformer import IMAGENET_MEAN, IMAGENET_STD, load_checkpoint
from segformer.predict import normalise, upsample_logits
from task.classes import (
    BACKGROUND,
    IGNORE_INDEX,
    NUM_CLASSES,
    PERSON_ANIMAL,
    PLANT,
    VEHICLE,
    lookup_table,
    read_ade_object_info,
    read_classes_txt,
)
from train.data import SegmentationFolder, collate, train_transform
from train.losses import partial_cross_entropy, teacher_kl
from train.paths import DATASETS_DIR as DATASETS
from train.paths import MODELS_DIR as MODELS
from train.prepare import prepare
from train.teach import TEACHERS, Teacher, score, task_matrix, teach
from train.teacher_targets import FUSION_TEACHERS, FUSIONS, decode, encode, fuse, load_target, target_path
from train.train import TrainConfig, folder_teachers, segmentation_loss, training_loss, training_set

# Without the teachers' runtime the module is skipped; under CI=true it runs, and the tests that run a teacher fail.
if importlib.util.find_spec("ai_edge_litert") is None and not IN_CI:
    pytest.skip("the teachers' runtime (requirements-teach.txt) is not installed", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "checkpoints" / "segformer-b0-4class"


@pytest.fixture(scope="module")
def taught(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two train and two val images of MSRC-v2 and of feral-cats, prepared at short side 96, with their targets."""
    out = tmp_path_factory.mktemp("data") / "tiny"
    prepare(out, 96, {"msrc-v2": DATASETS / "msrc-v2", "feral-cats": DATASETS / "feral-cats"}, limit=2, workers=1)
    teach([out], MODELS)
    return out


def test_task_matrix_follows_the_class_table() -> None:
    ade = task_matrix(read_classes_txt(MODELS / "deeplabv3-mobilenetv2-ade20k-513.classes.txt"), "ade20k", (0,))
    voc = task_matrix(read_classes_txt(MODELS / "deeplabv3-mobilenetv2-voc-257.classes.txt"), "pascal-voc")
    assert ade.shape == (151, NUM_CLASSES) and voc.shape == (21, NUM_CLASSES)
    assert ade[0].sum() == 0  # "other", ADE20K's not-annotated label, is left out
    assert ade[5].tolist() == [0, 1, 0, 0] and ade[13].tolist() == [0, 0, 1, 0] and ade[21].tolist() == [0, 0, 0, 1]
    assert ade[30].tolist() == [0.5, 0.5, 0, 0]  # field = {background, plant}: its mass shared
    assert ade[1].tolist() == [1, 0, 0, 0] and ade[126].tolist() == [1, 0, 0, 0]  # wall; pot is not the plant
    assert voc[16].argmax() == PLANT and voc[8].argmax() == PERSON_ANIMAL and voc[19].argmax() == VEHICLE
    assert voc[0].argmax() == BACKGROUND
    assert torch.equal(ade[1:].sum(1), torch.ones(150)) and torch.equal(voc.sum(1), torch.ones(21))


def test_ade20k_teacher_agrees_with_real_ade20k_annotations() -> None:
    """On the real ADE20K val samples the teacher's 4-class argmax matches the 4-class annotation (the models'
    README: 72% of annotated pixels at 151 classes; 4 classes agree at least as often)."""
    teacher = Teacher(TEACHERS["ade20k"], MODELS)
    samples = DATASETS / "ade20k-samples"
    lut = lookup_table(read_ade_object_info(next(samples.rglob("objectInfo150.csv"))), "ade20k")
    agree = total = 0
    for image_path in sorted(samples.rglob("images/validation/*.jpg")):
        rgb = np.array(Image.open(image_path).convert("RGB"))
        label = lut[np.array(Image.open(next(samples.rglob(f"annotations/validation/{image_path.stem}.png"))))]
        probs = teacher.probabilities(rgb)
        assert probs.shape == (NUM_CLASSES, *rgb.shape[:2])
        assert torch.allclose(probs.sum(0), torch.ones(rgb.shape[:2]), atol=1e-4)
        single = torch.from_numpy(label < NUM_CLASSES)
        agree += int((probs.argmax(0) == torch.from_numpy(label).long())[single].sum())
        total += int(single.sum())
    assert total > 0 and agree / total > 0.72


def test_targets_round_trip_within_rounding() -> None:
    probs = torch.rand(NUM_CLASSES, 7, 5).softmax(0)
    decoded = decode(io.BytesIO(encode(probs)))  # type: ignore[arg-type]
    assert decoded.shape == probs.shape
    assert (decoded - probs).abs().max() < 2.5 / 255
    assert torch.allclose(decoded.sum(0), torch.ones(7, 5))


def test_foreground_targets_round_trip_within_rounding() -> None:
    probs = torch.rand(1, 7, 5)
    decoded = decode(io.BytesIO(encode(probs)))  # type: ignore[arg-type]
    assert decoded.shape == (1, 7, 5) and (decoded - probs).abs().max() <= 0.5 / 255 + 1e-6


def test_selfie_teacher_finds_the_full_length_people() -> None:
    """On ccp-people val (the person, 1, against the rest) the selfie teacher's foreground (p > 0.5) overlaps the
    annotated person with IoU near the models' README's 0.91."""
    teacher = Teacher(TEACHERS["selfie"], MODELS)
    folder = DATASETS / "ccp-people"
    inter = union = 0
    for label_path in sorted((folder / "labels" / "val").glob("*.png"))[:8]:
        rgb = np.array(Image.open(folder / "images" / "val" / f"{label_path.stem}.jpg").convert("RGB"))
        person = torch.from_numpy(np.asarray(Image.open(label_path)) > 0)
        foreground = teacher.probabilities(rgb)
        assert foreground.shape == (1, *rgb.shape[:2]) and 0 <= foreground.min() and foreground.max() <= 1
        inter += int((person & (foreground[0] > 0.5)).sum())
        union += int((person | (foreground[0] > 0.5)).sum())
    assert inter / union > 0.8


def trim_case() -> dict[str, torch.Tensor]:
    """A 64x64 scene by hand: the class teachers see a close person in rows 20-39, columns 20-39 (p 0.9, an umbrella
    included) and a distant one at rows 2-3, columns 60-61; the selfie teacher sees the close person narrower
    (columns 20-31, p 0.8: 240 pixels, 5.9% of the photo, all of them person to the class teachers)."""
    ade = torch.zeros(NUM_CLASSES, 64, 64)
    ade[BACKGROUND] = 1.0
    for rows, cols in ((slice(20, 40), slice(20, 40)), (slice(2, 4), slice(60, 62))):
        ade[PERSON_ANIMAL, rows, cols], ade[BACKGROUND, rows, cols] = 0.9, 0.1
    voc = torch.zeros_like(ade)
    voc[BACKGROUND] = 1.0  # VOC sees no one
    selfie = torch.zeros(1, 64, 64)
    selfie[0, 20:40, 20:32] = 0.8
    return {"ade20k": ade, "voc": voc, "selfie": selfie}


def test_selfie_trim_takes_the_lower_probability_near_an_agreed_subject_only() -> None:
    targets = trim_case()
    plain = fuse("max-person", targets)[PERSON_ANIMAL]
    trimmed = fuse("selfie-trim", targets)
    person = trimmed[PERSON_ANIMAL]
    assert torch.allclose(trimmed.sum(0), torch.ones(64, 64), atol=1e-5)
    assert torch.allclose(person[20:40, 20:32], torch.full((20, 12), 0.8))  # the lower of 0.9 and 0.8
    # The trim reaches 2 pixels (64 / 32) beyond the subject: the umbrella's columns 32-33 go, 34-39 stay.
    assert person[20:40, 32:34].max() == 0 and trimmed[BACKGROUND, 20:40, 32:34].min() > 0.99
    assert torch.equal(person[20:40, 34:40], plain[20:40, 34:40]) and plain[30, 35] > 0.85
    assert torch.equal(person[2:4, 60:62], plain[2:4, 60:62])  # the distant person stays
    # A subject under 5% of the photo, or one the class teachers do not call a person: nothing changes.
    small = {**targets, "selfie": targets["selfie"] * (torch.arange(64) < 28)[None, None, :]}  # 160 pixels, 3.9%
    assert torch.equal(fuse("selfie-trim", small), fuse("max-person", small))
    other = {**targets, "selfie": torch.roll(targets["selfie"], 24, dims=1)}  # rows 44-63: no person there
    assert torch.equal(fuse("selfie-trim", other), fuse("max-person", other))


def test_selfie_trim_vehicle_is_selfie_trim_with_the_surer_teachers_vehicles() -> None:
    """The close person's trim as selfie-trim's, and a car that VOC sees surer than ADE20K takes VOC's vehicle."""
    targets = trim_case()
    ade, voc = targets["ade20k"].clone(), targets["voc"].clone()
    ade[VEHICLE, 50:60, 0:10], ade[BACKGROUND, 50:60, 0:10] = 0.3, 0.7
    voc[VEHICLE, 50:60, 0:10], voc[BACKGROUND, 50:60, 0:10] = 0.9, 0.1
    car = {**targets, "ade20k": ade, "voc": voc}
    fused = fuse("selfie-trim-vehicle", car)
    assert torch.allclose(fused.sum(0), torch.ones(64, 64), atol=1e-5)
    assert torch.allclose(fused[VEHICLE, 50:60, 0:10], torch.full((10, 10), 0.9))
    assert torch.equal(fused[PERSON_ANIMAL], fuse("selfie-trim", car)[PERSON_ANIMAL])
    assert torch.allclose(fuse("selfie-trim", car)[VEHICLE, 50:60, 0:10], torch.full((10, 10), 0.3))
    assert torch.equal(fuse("selfie-trim-vehicle", targets), fuse("selfie-trim", targets))  # no vehicle: the same


def test_teach_writes_every_target_records_the_models_and_resumes(taught: Path, capsys: pytest.CaptureFixture) -> None:
    for teacher in TEACHERS:
        record = json.loads((taught / "teachers" / f"{teacher}.json").read_text())
        assert len(record["sha256"]) == 64 and record["counts"] == {"train": 4, "val": 4}
    for image in (taught / "images" / "val").glob("*.jpg"):
        target = load_target(taught, "val", image.stem, "max-person")
        assert target.shape[-2:] == Image.open(image).size[::-1]
    stamps = {p: p.stat().st_mtime_ns for p in (taught / "teachers").rglob("*.png")}
    capsys.readouterr()
    teach([taught], MODELS)
    assert "0 image(s) to do" in capsys.readouterr().err
    assert stamps == {p: p.stat().st_mtime_ns for p in (taught / "teachers").rglob("*.png")}
    assert not list(taught.rglob("*.tmp"))


def test_teach_refuses_to_mix_models(taught: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    (copy / "teachers").mkdir(parents=True)
    record = json.loads((taught / "teachers" / "voc.json").read_text())
    (copy / "teachers" / "voc.json").write_text(json.dumps({**record, "sha256": "0" * 64}))
    with pytest.raises(ValueError, match="another voc model"):
        teach([copy], MODELS)


def test_fusions_are_distributions_and_max_person_takes_the_surer_teacher(taught: Path) -> None:
    stem = next((taught / "images" / "val").glob("msrc-v2__*.jpg")).stem
    ade, voc = (decode(target_path(taught, name, "val", stem)) for name in FUSION_TEACHERS["max-person"])
    for rule in FUSIONS:
        fused = load_target(taught, "val", stem, rule)
        assert torch.allclose(fused.sum(0), torch.ones(fused.shape[1:]), atol=1e-4)
    fused = load_target(taught, "val", stem, "max-person")
    assert torch.allclose(fused[PERSON_ANIMAL], torch.maximum(ade[PERSON_ANIMAL], voc[PERSON_ANIMAL]), atol=1e-4)
    # The other classes keep ADE20K's proportions.
    rest = fused[[BACKGROUND, PLANT, VEHICLE]]
    ade_rest = ade[[BACKGROUND, PLANT, VEHICLE]]
    keep = ade_rest.sum(0) > 0.1
    assert torch.allclose((rest / rest.sum(0))[:, keep], (ade_rest / ade_rest.sum(0))[:, keep], atol=1e-4)
    assert torch.equal(load_target(taught, "val", stem, "ade20k"), ade)


def test_max_person_vehicle_takes_the_surer_teacher_for_both_classes(taught: Path) -> None:
    for stem in (p.stem for p in (taught / "images" / "val").glob("*.jpg")):
        ade, voc = (decode(target_path(taught, name, "val", stem)) for name in FUSION_TEACHERS["max-person"])
        fused = load_target(taught, "val", stem, "max-person-vehicle")
        taken = torch.maximum(ade[[PERSON_ANIMAL, VEHICLE]], voc[[PERSON_ANIMAL, VEHICLE]])
        fits = taken.sum(0) <= 1  # where the two maxima leave room, they are taken as they are
        assert torch.allclose(fused[[PERSON_ANIMAL, VEHICLE]][:, fits], taken[:, fits], atol=1e-4)
        rest, ade_rest = fused[[BACKGROUND, PLANT]], ade[[BACKGROUND, PLANT]]
        keep = fits & (ade_rest.sum(0) > 0.1) & (rest.sum(0) > 0.1)
        assert torch.allclose((rest / rest.sum(0))[:, keep], (ade_rest / ade_rest.sum(0))[:, keep], atol=1e-3)
        # max-person is the same rule with ADE20K's vehicles.
        assert torch.allclose(load_target(taught, "val", stem, "max-person")[PERSON_ANIMAL], taken[0], atol=1e-4)


def test_score_counts_the_raw_labels_pixels(taught: Path) -> None:
    """The teachers are scored on the raw sources' labels at their own size (the targets resized to them), as
    train.evaluate scores a checkpoint, not on the prepared 96-pixel copies."""
    results = score([taught])
    expected = 0
    for source in ("msrc-v2", "feral-cats"):
        names = read_classes_txt(DATASETS / source / "classes.txt")
        lut = lookup_table(names, source, scoring=True)
        for image in sorted((taught / "images" / "val").glob(f"{source}__*.jpg")):
            raw = np.asarray(Image.open(DATASETS / source / "labels" / "val" / f"{image.stem.split('__')[1]}.png"))
            expected += int((lut[raw] < NUM_CLASSES).sum())
    for rule in FUSIONS:
        assert sum(map(sum, results[rule]["tiny"]["confusion"])) == expected
        assert results[rule]["tiny"]["sources"] == ["feral-cats", "msrc-v2"]


def test_targets_are_cropped_and_flipped_with_the_image(taught: Path) -> None:
    """The joint transform moves a target with its image and mask; padding has no target (all zeros)."""
    data = SegmentationFolder(taught, "train", train_transform(160), teacher="ade20k")
    plain = SegmentationFolder(taught, "train", teacher="ade20k")
    torch.manual_seed(0)
    for index in range(len(data)):
        image, mask, target = data[index]
        assert target.shape == (NUM_CLASSES, 160, 160) and mask.shape == (160, 160)
        padded = (target.sum(0) == 0) & (mask == IGNORE_INDEX)
        assert torch.equal(target.sum(0) == 0, padded)  # no target exactly where the crop padded
        _, raw_mask, raw_target = plain[index]
        agreement = lambda m, t: (t.argmax(0) == m)[m < NUM_CLASSES].float().mean()  # noqa: E731
        assert abs(agreement(mask, target) - agreement(raw_mask, raw_target)) < 0.2
    images, masks, targets = collate([data[0], data[1]])
    assert images.shape == (2, 3, 160, 160) and targets.shape == (2, NUM_CLASSES, 160, 160)


def real_logits() -> tuple[torch.Tensor, torch.Tensor]:
    """The shipped model's full-size logits on a real feral-cats val photo, and its label (cat / not a cat)."""
    model, _ = load_checkpoint(CHECKPOINT)
    image, mask = SegmentationFolder(DATASETS / "feral-cats", "val")[0]
    with torch.no_grad():
        logits = model(normalise(image[None], IMAGENET_MEAN, IMAGENET_STD))
    return upsample_logits(logits, mask.shape), mask[None]


def test_one_hot_teacher_at_temperature_one_is_the_cross_entropy() -> None:
    logits, mask = real_logits()
    single = mask == PERSON_ANIMAL  # the cats: single-class pixels
    labels = torch.where(single, mask, torch.full_like(mask, IGNORE_INDEX))
    one_hot = torch.nn.functional.one_hot(labels.clamp(max=NUM_CLASSES - 1), NUM_CLASSES).movedim(-1, 1).float()
    one_hot = one_hot * single[:, None]  # no target off the cats
    kd = teacher_kl(logits, labels, one_hot, temperature=1.0)
    assert math.isclose(kd.item(), partial_cross_entropy(logits, labels).item(), rel_tol=1e-4)


def test_temperature_matches_a_hand_computed_pixel() -> None:
    logits = torch.tensor([2.0, 0.0, -1.0, 0.5]).view(1, 4, 1, 1)
    q = torch.tensor([0.7, 0.1, 0.1, 0.1]).view(1, 4, 1, 1)
    labels = torch.full((1, 1, 1), IGNORE_INDEX)
    t = 2.0
    q_t = [v ** (1 / t) for v in (0.7, 0.1, 0.1, 0.1)]
    q_t = [v / sum(q_t) for v in q_t]
    z = [v / t for v in (2.0, 0.0, -1.0, 0.5)]
    log_p = [v - math.log(sum(math.exp(w) for w in z)) for v in z]
    expected = t * t * sum(a * (math.log(a) - b) for a, b in zip(q_t, log_p, strict=True))
    assert math.isclose(teacher_kl(logits, labels, q, t).item(), expected, rel_tol=1e-5)


def test_agree_drops_only_the_labelled_pixels_the_teacher_gets_wrong() -> None:
    """on_labelled="agree": a cat pixel the teacher calls background has no target; the mean over the rest equals
    "all" on the agreeing pixels alone, and partial ("not a cat") pixels keep theirs."""
    logits, mask = real_logits()
    teacher = torch.softmax(3 * torch.randn_like(logits), 1)
    agree = (mask >= NUM_CLASSES) | (teacher.argmax(1) == mask)
    assert (~agree).any() and (agree & (mask == PERSON_ANIMAL)).any()
    kept = torch.where(agree[:, None], teacher, torch.zeros_like(teacher))
    expected = teacher_kl(logits, mask, kept, temperature=2.0)
    assert math.isclose(teacher_kl(logits, mask, teacher, 2.0, "agree").item(), expected.item(), rel_tol=1e-5)
    assert not math.isclose(teacher_kl(logits, mask, teacher, 2.0, "all").item(), expected.item(), rel_tol=1e-3)


def test_none_leaves_the_teacher_only_what_nobody_labelled() -> None:
    """on_labelled="none": single-class pixels have no target, whatever the teacher says; the mean over the rest
    equals "all" on the partial and unannotated pixels alone, and a labelled pixel gets no gradient from the term."""
    logits, mask = real_logits()
    mask = mask.clone()
    mask[..., : mask.shape[-1] // 4] = BACKGROUND  # a labelled strip beside the partial and ignored pixels
    teacher = torch.softmax(3 * torch.randn_like(logits), 1)
    unlabelled = mask >= NUM_CLASSES
    assert unlabelled.any() and (~unlabelled).any()
    kept = torch.where(unlabelled[:, None], teacher, torch.zeros_like(teacher))
    expected = teacher_kl(logits, mask, kept, temperature=2.0)
    logits = logits.clone().requires_grad_(True)
    loss = teacher_kl(logits, mask, teacher, 2.0, "none")
    assert math.isclose(loss.item(), expected.item(), rel_tol=1e-5)
    assert not math.isclose(teacher_kl(logits, mask, teacher, 2.0, "all").item(), expected.item(), rel_tol=1e-3)
    loss.backward()
    assert (logits.grad.movedim(1, -1)[~unlabelled] == 0).all()


def test_partial_pixels_get_gradients_only_toward_their_set() -> None:
    """feral-cats' "not a cat" pixels: the teacher is restricted to {background, plant, vehicle}, so descending the
    loss raises no logit outside that set (person/animal only falls), and the loss is finite."""
    logits, mask = real_logits()
    partial = (mask != PERSON_ANIMAL) & (mask != IGNORE_INDEX)
    assert partial.any()
    teacher = torch.softmax(torch.randn_like(logits), 1)  # a teacher that also says person/animal there
    logits = logits.clone().requires_grad_(True)
    teacher_kl(logits, mask, teacher, temperature=2.0).backward()
    grad = logits.grad.movedim(1, -1)[partial]  # (pixels, C)
    assert (grad[:, PERSON_ANIMAL] >= 0).all() and (grad[:, PERSON_ANIMAL] > 0).any()
    assert ((-grad[:, [BACKGROUND, PLANT, VEHICLE]]) > 0).any()


def test_weight_zero_is_todays_loss_and_reads_no_targets(taught: Path) -> None:
    logits, mask = real_logits()
    teacher = torch.softmax(torch.randn_like(logits), 1)
    cfg = TrainConfig(data=(str(taught),), teacher_weight=0.0)
    loss, _ = training_loss(logits, mask, teacher, None, cfg)
    assert torch.equal(loss, segmentation_loss(logits, mask, None, "ce"))
    assert len(training_set(replace(cfg, crop_size=64))[0]) == 2  # (image, mask): no target read
    loss, kd = training_loss(logits, mask, teacher, None, replace(cfg, teacher_weight=0.5))
    assert kd is not None and torch.allclose(loss, segmentation_loss(logits, mask, None, "ce") + 0.5 * kd)
    assert len(training_set(replace(cfg, teacher_weight=0.5, crop_size=64))[0]) == 3


@pytest.mark.parametrize("seed", [0, 1])
def test_copy_paste_gives_pasted_pixels_their_class_as_target(taught: Path, seed: int) -> None:
    """Where Copy-Paste overwrites a crop, the teacher's target becomes the one-hot of the pasted class (the teacher
    never saw those pixels); elsewhere it is the crop's own target, unchanged."""
    cfg = TrainConfig(data=(str(taught),), teacher_weight=1.0, crop_size=64, base_size=96)
    plain = training_set(cfg)
    pasting = training_set(replace(cfg, copy_paste=1.0, copy_paste_min_scale=0.5))
    torch.manual_seed(seed)
    image0, mask0, target0 = plain[0]
    torch.manual_seed(seed)
    image, mask, target = pasting[0]
    assert target.shape == target0.shape and type(target) is type(target0)
    pasted = (image != image0).any(0) | (mask != mask0)
    assert pasted.any()
    classes = mask[pasted].unique().tolist()
    assert set(classes) <= {PERSON_ANIMAL, VEHICLE}
    for cls in classes:
        where = pasted & (mask == cls)
        onehot = torch.zeros(target.shape[0])
        onehot[cls] = 1
        assert torch.equal(target[:, where].T, onehot.expand(int(where.sum()), -1))
    assert torch.equal(target[:, ~pasted], target0[:, ~pasted])


def test_folder_teachers_fuse_that_folders_targets_by_their_own_rule(taught: Path, tmp_path: Path) -> None:
    """The folder named in --folder-teachers has its rule's targets, every other folder --teacher's: the same crops
    as a run with that rule for all."""
    other = tmp_path / "other"
    shutil.copytree(taught, other)
    cfg = TrainConfig(data=(str(taught), str(other)), teacher_weight=1.0, teacher="max-person", crop_size=64)
    mixed = training_set(replace(cfg, folder_teachers=(f"{other}=selfie-trim-vehicle",)))
    for index, rule in ((0, "max-person"), (len(mixed) - 1, "selfie-trim-vehicle")):
        torch.manual_seed(index)
        target = mixed[index][2]
        torch.manual_seed(index)
        assert torch.equal(target, training_set(replace(cfg, teacher=rule))[index][2])
    assert [folder.teacher for folder in mixed.datasets] == ["max-person", "selfie-trim-vehicle"]


@pytest.mark.parametrize(
    ("entries", "changes", "message"),
    [
        (("{taught}=no-such-rule",), {}, "expected FOLDER=FUSION"),
        (("elsewhere=selfie-trim",), {}, "is not one of --data"),
        (("{taught}=selfie-trim", "{taught}=ade20k"), {}, "given twice"),
        (("{taught}=selfie-trim",), {"teacher_weight": 0.0}, "give --teacher-weight"),
    ],
)
def test_folder_teachers_refuse_what_they_cannot_apply(
    taught: Path, entries: tuple[str, ...], changes: dict, message: str
) -> None:
    rules = tuple(entry.format(taught=taught) for entry in entries)
    cfg = TrainConfig(**{"data": (str(taught),), "teacher_weight": 1.0, "folder_teachers": rules, **changes})
    with pytest.raises(ValueError, match=message):
        folder_teachers(cfg)
