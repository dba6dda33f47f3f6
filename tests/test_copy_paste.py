"""Simple Copy-Paste on real training images: labels move with the pixels, ignore stays ignore."""

import pytest
import torch

from task.classes import IGNORE_INDEX, PERSON_ANIMAL, VEHICLE
from train.copy_paste import CopyPaste, paste
from train.data import SegmentationFolder, train_transform
from train.paths import DATASETS_DIR as DATASETS


def msrc() -> SegmentationFolder:
    return SegmentationFolder(DATASETS / "msrc-v2", "val")


def test_paste_moves_the_labels_with_the_pixels() -> None:
    data = msrc()
    image, mask = (t.as_subclass(torch.Tensor) for t in data[0])
    index = next(i for i in range(len(data)) if (data[i][1] == VEHICLE).sum() > 500)
    cut_image, cut_mask = (t.as_subclass(torch.Tensor) for t in data[index])
    cut = cut_mask == VEHICLE
    top, left = -40, 100  # overhangs the top edge
    out_image, out_mask = paste(image, mask, cut_image, cut_mask, cut, top, left)
    window = (slice(0, cut.shape[0] + top), slice(left, min(left + cut.shape[1], mask.shape[1])))
    inside = (slice(-top, None), slice(0, window[1].stop - left))  # the part of the cut that lands inside
    moved = torch.zeros_like(mask, dtype=torch.bool)
    moved[window] = cut[inside]
    assert moved.sum() > 500
    assert torch.all(out_mask[moved] == VEHICLE)
    assert torch.equal(
        out_image[:, window[0], window[1]][:, cut[inside]], cut_image[:, inside[0], inside[1]][:, cut[inside]]
    )
    assert torch.equal(out_mask[~moved], mask[~moved]) and torch.equal(out_image[:, ~moved], image[:, ~moved])
    assert torch.equal(paste(image, mask, cut_image, cut_mask, cut, 10_000, 0)[1], mask)  # fully outside: no-op


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_copy_paste_only_adds_pasted_objects(seed: int) -> None:
    sources = [msrc()]
    targets = SegmentationFolder(DATASETS / "msrc-v2", "val", train_transform(128))
    dataset = CopyPaste(targets, sources, probability=1.0, scale=(0.5, 1.0))
    assert {cls for _, _, cls in dataset.objects} == {PERSON_ANIMAL, VEHICLE}
    torch.manual_seed(seed)
    plain_image, plain_mask = targets[3]
    torch.manual_seed(seed)
    image, mask = dataset[3]
    assert image.shape == plain_image.shape and mask.shape == plain_mask.shape and image.dtype == torch.uint8
    changed = mask != plain_mask
    assert changed.any()  # at scale >= 0.5 of the crop something lands inside it
    assert set(mask[changed].unique().tolist()) <= {PERSON_ANIMAL, VEHICLE}  # pasted labels overwrite
    same = ~changed & (image != plain_image).any(0)  # pixels replaced by a pasted object of the same class
    assert set(mask[same].unique().tolist()) <= {PERSON_ANIMAL, VEHICLE}
    untouched = ~changed & ~same
    assert torch.all(mask[untouched & (plain_mask == IGNORE_INDEX)] == IGNORE_INDEX)  # ignore stays ignore


def test_copy_paste_off_returns_the_crop_and_bad_settings_are_refused() -> None:
    targets = SegmentationFolder(DATASETS / "msrc-v2", "val")
    dataset = CopyPaste(targets, [msrc()], probability=0.0, scale=(0.2, 1.0))
    assert all(torch.equal(a, b) for a, b in zip(dataset[5], targets[5], strict=True))
    with pytest.raises(ValueError, match="scale range"):
        CopyPaste(targets, [msrc()], probability=0.5, scale=(1.0, 0.5))
