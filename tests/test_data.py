"""Tests of SegmentationFolder, the joint transforms and collate."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import tv_tensors

from task.classes import IGNORE_INDEX, PERSON_ANIMAL, VEHICLE, label_id, task_classes_txt
from train.data import SegmentationFolder, collate, train_transform
from train.paths import DATASETS_DIR as DATASETS
from train.prepare import main as prepare_main

GREY_LEVELS = (40, 90, 150, 210)  # image grey level encoding each task class


def make_folder(root: Path, masks: dict[str, np.ndarray]) -> Path:
    """Write a folder in the shared layout whose grey images encode their task-class masks."""
    root.mkdir(parents=True)
    (root / "classes.txt").write_text(task_classes_txt())
    for kind in ("images", "labels"):
        (root / kind / "train").mkdir(parents=True)
    for stem, mask in masks.items():
        grey = np.asarray(GREY_LEVELS, dtype=np.uint8)[mask]
        Image.fromarray(np.stack([grey] * 3, axis=-1)).save(root / "images" / "train" / f"{stem}.png")
        Image.fromarray(mask.astype(np.uint8)).save(root / "labels" / "train" / f"{stem}.png")
    return root


def block_mask(height: int, width: int, block: int, seed: int) -> np.ndarray:
    """Random task classes 0..3 in square blocks."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, 4, size=(height // block + 1, width // block + 1))
    return np.kron(cells, np.ones((block, block), dtype=np.int64))[:height, :width]


def test_reads_a_shared_source_with_its_mapping() -> None:
    dataset = SegmentationFolder(DATASETS / "camvid", "val")
    assert len(dataset) == 101 and dataset.source_name == "camvid"
    assert dataset.stems[0] == "0016E5_07959"
    image, mask = dataset[0]
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8 and image.shape == (3, 360, 480)
    assert isinstance(mask, tv_tensors.Mask) and mask.dtype == torch.int64 and mask.shape == (360, 480)
    raw = torch.from_numpy(np.array(Image.open(DATASETS / "camvid" / "labels" / "val" / "0016E5_07959.png")))
    assert torch.all(mask[raw == 8] == VEHICLE) and torch.all(mask[raw == 9] == PERSON_ANIMAL)
    rider = label_id(frozenset({PERSON_ANIMAL, VEHICLE}))
    assert torch.all(mask[raw == 11] == IGNORE_INDEX) and torch.all(mask[raw == 10] == rider)  # bicyclist: partial
    assert set(mask.unique().tolist()) <= {0, 1, 2, 3, rider, IGNORE_INDEX}


def test_reads_a_prepared_folder_as_is(tmp_path: Path) -> None:
    out = tmp_path / "prepared"
    prepare_main(["--out", str(out), "--limit", "2", "--workers", "1", "--sources", f"msrc-v2={DATASETS / 'msrc-v2'}"])
    dataset = SegmentationFolder(out, "val")
    assert dataset.stems == ["msrc-v2__10_15_s", "msrc-v2__10_24_s"]
    _, mask = dataset[1]
    written = np.asarray(Image.open(out / "labels" / "val" / "msrc-v2__10_24_s.png"))
    assert np.array_equal(mask.numpy(), written)


def test_folder_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"dataset folder not found: {tmp_path / 'missing'}"):
        SegmentationFolder(tmp_path / "missing", "train")
    with pytest.raises(FileNotFoundError, match="classes.txt"):
        SegmentationFolder(tmp_path, "train")
    root = make_folder(tmp_path / "data", {"a": np.zeros((8, 8), dtype=np.int64)})
    with pytest.raises(FileNotFoundError, match=str(root / "images" / "val")):
        SegmentationFolder(root, "val")
    (root / "images" / "val").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        SegmentationFolder(root, "val")
    shutil.copy(root / "images" / "train" / "a.png", root / "images" / "train" / "b.png")
    with pytest.raises(FileNotFoundError, match="b.png"):
        SegmentationFolder(root, "train")
    Image.new("L", (9, 8)).save(root / "labels" / "train" / "b.png")
    dataset = SegmentationFolder(root, "train")
    assert dataset.stems == ["a", "b"] and dataset.source_name == "data"
    assert dataset[0][0].shape == (3, 8, 8)
    with pytest.raises(ValueError, match="label size 9x8 differs from image size 8x8: .*b.png"):
        dataset[1]


def test_train_transform_keeps_image_and_mask_aligned(tmp_path: Path) -> None:
    mask = block_mask(96, 128, block=16, seed=0)
    dataset = SegmentationFolder(make_folder(tmp_path / "data", {"a": mask}), "train", train_transform(64, 96))
    torch.manual_seed(0)
    for _ in range(20):
        image, out = dataset[0]
        assert image.shape == (3, 64, 64) and image.dtype == torch.uint8 and out.shape == (64, 64)
        assert torch.equal(image[0], image[1]) and torch.equal(image[0], image[2])  # still grey
        # Away from block edges (where bilinear and nearest resizing differ), grey levels keep the
        # order of the classes they encode: photometric changes are monotonic on grey images.
        padded = torch.nn.functional.pad(out[None, None].float(), (3, 3, 3, 3), value=-1)
        windows = padded.unfold(2, 7, 1).unfold(3, 7, 1).reshape(64, 64, -1)
        interior = (windows == out[..., None]).all(-1)
        ranges = [image[0][interior & (out == c)] for c in range(4)]
        present = [(r.min().item(), r.max().item()) for r in ranges if r.numel()]
        assert len(present) >= 2
        assert all(hi < lo for (_, hi), (lo, _) in zip(present, present[1:], strict=False))


def test_train_transform_pads_mask_with_ignore(tmp_path: Path) -> None:
    mask = block_mask(40, 60, block=8, seed=1)
    dataset = SegmentationFolder(make_folder(tmp_path / "data", {"a": mask}), "train", train_transform(64, 32))
    torch.manual_seed(0)
    padded_seen = 0
    for _ in range(10):
        image, out = dataset[0]
        assert image.shape == (3, 64, 64) and out.shape == (64, 64)
        pad = out == IGNORE_INDEX
        if pad.any():  # the source has no ignore pixels: these are padding
            padded_seen += 1
            assert image[0][pad].unique().numel() == 1  # one fill value, shifted alike by the jitter
            assert (out[~pad] < 4).all()
    assert padded_seen >= 5  # short side 16..64 < 64 in most draws


def test_untransformed_items_and_collate(tmp_path: Path) -> None:
    masks = {"a": block_mask(24, 32, 8, 2), "b": block_mask(24, 32, 8, 3), "c": block_mask(20, 32, 8, 4)}
    dataset = SegmentationFolder(make_folder(tmp_path / "data", masks), "train")
    image, mask = dataset[0]
    assert image.shape == (3, 24, 32) and torch.equal(mask, torch.from_numpy(masks["a"]))
    images, batch_masks = next(iter(DataLoader(dataset, batch_size=2, collate_fn=collate)))
    assert type(images) is torch.Tensor and images.shape == (2, 3, 24, 32) and images.dtype == torch.uint8
    assert batch_masks.shape == (2, 24, 32) and batch_masks.dtype == torch.int64
    with pytest.raises(ValueError, match="batch_size=1"):
        collate([dataset[0], dataset[2]])
