"""Partial labels: the marginal cross-entropy and the scores that leave partial pixels out, on real labels."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from segformer import IMAGENET_MEAN, IMAGENET_STD, SegFormer
from segformer.predict import normalise, upsample_logits
from segformer.segmenter import Segmenter
from task.classes import BACKGROUND, CLASS_NAMES, IGNORE_INDEX, PARTIAL_IDS, PERSON_ANIMAL, PLANT, VEHICLE, label_id
from task.metrics import confusion_matrix, partial_counts, scores
from train.data import SegmentationFolder
from train.evaluate import evaluate
from train.losses import partial_cross_entropy
from train.paths import DATASETS_DIR as DATASETS

RIDER = label_id(frozenset({PERSON_ANIMAL, VEHICLE}))
NOT_A_CAT = label_id(frozenset({BACKGROUND, PLANT, VEHICLE}))


def camvid_labels() -> torch.Tensor:
    """Two real CamVid val masks (bicyclists are partial labels, unlabelled pixels ignored), at quarter size."""
    dataset = SegmentationFolder(DATASETS / "camvid", "val")
    masks = torch.stack([dataset[i][1] for i in range(2)])[:, ::4, ::4].contiguous()
    assert (masks == IGNORE_INDEX).any()
    return masks


@pytest.mark.parametrize("weighted", [False, True])
def test_on_single_class_pixels_it_is_the_cross_entropy(weighted: bool) -> None:
    masks = camvid_labels()
    masks[masks == RIDER] = IGNORE_INDEX  # single-class pixels and ignore only
    logits = torch.randn(masks.shape[0], 4, *masks.shape[1:], generator=torch.Generator().manual_seed(0))
    weight = torch.tensor([0.87, 1.26, 2.17, 1.95]) if weighted else None
    ours = partial_cross_entropy(logits, masks, weight)
    reference = F.cross_entropy(logits, masks, weight=weight, ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(ours, reference, rtol=1e-6, atol=0)
    total = F.cross_entropy(logits, masks, weight=weight, ignore_index=IGNORE_INDEX, reduction="sum")
    torch.testing.assert_close(partial_cross_entropy(logits, masks, weight, reduction="sum"), total, rtol=1e-6, atol=0)


def sift_flow_val(count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """SIFT Flow val images with their labels in SIFT Flow's own 33 classes (ids 1-33; 0, "unlabeled", ignored)."""
    folder = DATASETS / "sift-flow"
    samples = []
    for path in sorted((folder / "images" / "val").glob("*.jpg"))[:count]:
        image = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
        raw = torch.from_numpy(np.asarray(Image.open(folder / "labels" / "val" / f"{path.stem}.png")).astype(np.int64))
        samples.append((image, raw.masked_fill(raw == 0, IGNORE_INDEX)))
    return samples


def test_any_number_of_classes_trains_and_scores_here_sift_flows_own_33() -> None:
    """Not only the task's 4 classes: with SIFT Flow's own labels (34 logits, one per id) the loss is the weighted
    cross-entropy, and evaluate() scores every labelled pixel, none of them partial (partial labels are the task
    classes' only)."""
    masks = torch.stack([mask for _, mask in sift_flow_val(2)])[:, ::4, ::4]
    logits = torch.randn(2, 34, *masks.shape[1:], generator=torch.Generator().manual_seed(0))
    weight = torch.rand(34, generator=torch.Generator().manual_seed(1)) + 0.5
    reference = F.cross_entropy(logits, masks, weight=weight, ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(partial_cross_entropy(logits, masks, weight), reference, rtol=1e-6, atol=0)

    torch.manual_seed(0)
    model = SegFormer.from_preset("b0", 34).eval()
    data = sift_flow_val(2)
    names = tuple(f"c{i}" for i in range(34))
    result = evaluate(Segmenter(model, names, np.zeros((34, 3), np.uint8), max_side=None), data)
    assert result["pixels"] == sum(int((mask != IGNORE_INDEX).sum()) for _, mask in data)
    assert result["partial_pixels"] == 0 and result["outside_admissible"] is None
    with torch.no_grad():
        summed = sum(
            F.cross_entropy(
                upsample_logits(model(normalise(image[None], IMAGENET_MEAN, IMAGENET_STD)).float(), mask.shape),
                mask[None],
                ignore_index=IGNORE_INDEX,
                reduction="sum",
            )
            for image, mask in data
        )
    assert result["loss"] == pytest.approx(summed.item() / result["pixels"], rel=1e-5)


def test_a_partial_pixel_is_trained_on_the_merged_probability_and_its_gradient_stays_in_the_set() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5, 1.0]]).view(1, 4, 1, 1).repeat(1, 1, 1, 2).requires_grad_()
    labels = torch.tensor([[[NOT_A_CAT, IGNORE_INDEX]]])
    loss = partial_cross_entropy(logits, labels)
    p = logits[0, :, 0, 0].softmax(0)
    in_set = torch.tensor([True, True, False, True])
    torch.testing.assert_close(loss, -p[in_set].sum().log())
    loss.backward()
    grad = logits.grad[0, :, 0, 0]
    torch.testing.assert_close(grad, p - torch.where(in_set, p / p[in_set].sum(), 0))  # d(-log P_S)/dz
    assert (grad[~in_set] > 0).all() and (grad[in_set] < 0).all()  # mass moves from outside S into S
    assert torch.equal(logits.grad[0, :, 0, 1], torch.zeros(4))  # the ignored pixel: no gradient, no NaN
    swapped = logits.detach()[:, [3, 1, 2, 0]]  # moving mass between classes inside S changes nothing
    torch.testing.assert_close(partial_cross_entropy(swapped, labels), loss.detach())


def test_real_bicyclists_train_person_animal_or_vehicle() -> None:
    masks = camvid_labels()
    riders = masks == RIDER
    assert riders.any()
    logits = torch.zeros(masks.shape[0], 4, *masks.shape[1:])
    logits[:, PERSON_ANIMAL] = 8.0  # calling the rider person/animal costs almost nothing ...
    calm = partial_cross_entropy(logits, torch.where(riders, masks, IGNORE_INDEX))
    logits[:, BACKGROUND] = 16.0  # ... calling it background costs
    wrong = partial_cross_entropy(logits, torch.where(riders, masks, IGNORE_INDEX))
    assert calm < 1e-3 and wrong > 7


def test_scores_leave_partial_pixels_out_of_miou_and_count_them_apart() -> None:
    target = torch.tensor([[PERSON_ANIMAL, PERSON_ANIMAL, NOT_A_CAT, NOT_A_CAT, NOT_A_CAT, IGNORE_INDEX]])
    pred = torch.tensor([[PERSON_ANIMAL, BACKGROUND, PERSON_ANIMAL, PLANT, VEHICLE, PERSON_ANIMAL]])
    confusion = confusion_matrix(pred, target, 4)
    partial = partial_counts(pred, target, 4)
    assert confusion.sum() == 2 and partial.sum() == 3
    assert partial[PARTIAL_IDS.index(NOT_A_CAT)].tolist() == [0, 1, 1, 1]
    result = scores(confusion, list(CLASS_NAMES), partial)
    # single-class pixels: person/animal TP 1, FN 1; background FP 1 -> IoU 1/2 and 0/1
    assert result["per_class_iou"]["person/animal"] == pytest.approx(0.5)
    assert result["miou"] == pytest.approx(0.25) and result["pixels"] == 2
    # one of the three "not a cat" pixels is predicted person/animal: outside its set, a false positive
    assert result["partial_pixels"] == 3 and result["outside_admissible"] == pytest.approx(1 / 3)
    assert result["per_class_iou_with_partial"]["person/animal"] == pytest.approx(1 / 3)
    assert result["per_class_iou_with_partial"]["background"] == pytest.approx(0.0)
