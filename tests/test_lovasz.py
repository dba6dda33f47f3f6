"""The Lovász-softmax loss: a hand-worked example, its definition evaluated set by set, 1 - mIoU on real labels."""

import numpy as np
import pytest
import torch
from PIL import Image

from task.classes import IGNORE_INDEX, NUM_CLASSES, label_id, lookup_table, read_classes_txt
from train.lovasz import lovasz_softmax
from train.paths import DATASETS_DIR as DATASETS

NOT_A_CAT = label_id(frozenset({0, 1, 3}))  # a partial label: background, plant or vehicle


def test_a_hand_worked_example() -> None:
    """Three labelled pixels (class 0; class 1; class 1), an ignored one and a partial one, which must not count.

    Class 0: ground truth [1, 0, 0], p(0) = [0.7, 0.4, 0.1], errors [0.3, 0.4, 0.1]. In decreasing order: pixel 2
    (background), pixel 1 (class 0), pixel 3. Jaccard loss of mispredicting the first k: {2}: 1 - 1/2 = 1/2; {2, 1}:
    1 - 0/2 = 1; {2, 1, 3}: 1 - 0/3 = 1. Steps 1/2, 1/2, 0: loss_0 = 0.4 / 2 + 0.3 / 2 = 0.35.
    Class 1: ground truth [0, 1, 1], p(1) = [0.1, 0.4, 0.7], errors [0.1, 0.6, 0.3]. Order: pixel 2, pixel 3 (both
    class 1), pixel 1. {2}: 1 - 1/2; {2, 3}: 1 - 0/2; {2, 3, 1}: 1 - 0/3. Steps 1/2, 1/2, 0: loss_1 = 0.6/2 + 0.3/2
    = 0.45. Classes 2 and 3 are absent: the loss is (0.35 + 0.45) / 2 = 0.4.
    """
    probs = torch.tensor(
        [
            [0.7, 0.1, 0.1, 0.1],
            [0.4, 0.4, 0.1, 0.1],
            [0.1, 0.7, 0.1, 0.1],
            [0.05, 0.05, 0.8, 0.1],  # ignored
            [0.1, 0.1, 0.1, 0.7],  # partial
        ]
    )
    logits = probs.log().T.reshape(1, NUM_CLASSES, 1, 5)
    labels = torch.tensor([[[0, 1, 1, IGNORE_INDEX, NOT_A_CAT]]])
    assert lovasz_softmax(logits, labels).item() == pytest.approx(0.4, abs=1e-6)


def jaccard_loss(truth: set[int], mispredicted: set[int]) -> float:
    """1 - IoU of a class whose ground truth is ``truth`` when the pixels in ``mispredicted`` are wrong."""
    return 1 - len(truth - mispredicted) / len(truth | mispredicted) if truth | mispredicted else 0.0


def by_definition(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """The Lovász extension (Berman et al., Definition 2) evaluated with Python sets, one class at a time."""
    losses = []
    for c in sorted(set(labels.tolist())):
        truth = {i for i, y in enumerate(labels.tolist()) if y == c}
        errors = [abs(float(i in truth) - p) for i, p in enumerate(probs[:, c].tolist())]
        order = sorted(range(len(errors)), key=lambda i: -errors[i])
        losses.append(
            sum(
                errors[i] * (jaccard_loss(truth, set(order[: k + 1])) - jaccard_loss(truth, set(order[:k])))
                for k, i in enumerate(order)
            )
        )
    return sum(losses) / len(losses)


def test_it_is_the_lovasz_extension_of_the_jaccard_loss() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, NUM_CLASSES, 4, 5, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (2, 4, 5), generator=generator)
    labels[0, 0, :2] = IGNORE_INDEX
    labels[1, 3, 3] = NOT_A_CAT
    single = labels.flatten() < NUM_CLASSES
    probs = logits.softmax(1).movedim(1, -1).reshape(-1, NUM_CLASSES)[single]
    assert lovasz_softmax(logits, labels).item() == pytest.approx(by_definition(probs, labels.flatten()[single]))


def msrc_labels(stem: str) -> torch.Tensor:
    """An MSRC-v2 val label mapped to the task classes (with its ignored pixels), (1, H, W)."""
    root = DATASETS / "msrc-v2"
    lut = lookup_table(read_classes_txt(root / "classes.txt"), "msrc-v2")
    with Image.open(root / "labels" / "val" / f"{stem}.png") as label:
        return torch.from_numpy(lut[np.asarray(label)].astype(np.int64))[None]


def confident(prediction: torch.Tensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Logits whose softmax is one-hot on ``prediction`` (to float32 precision)."""
    return torch.nn.functional.one_hot(prediction, num_classes).movedim(-1, 1).float() * 100.0


def mean_iou(prediction: torch.Tensor, labels: torch.Tensor, num_classes: int = NUM_CLASSES) -> float:
    valid = labels < num_classes
    ious = []
    for c in labels[valid].unique().tolist():
        predicted, truth = (prediction == c) & valid, labels == c
        ious.append(((predicted & truth).sum() / (predicted | truth).sum()).item())
    return sum(ious) / len(ious)


def test_for_confident_predictions_it_is_one_minus_the_mean_iou() -> None:
    """On a vertex (one-hot probabilities) the extension equals the set function: 1 - mIoU over the classes present.
    The prediction is the label shifted by 12 pixels, on a real MSRC-v2 label (classes 0-2, ignored pixels)."""
    labels = msrc_labels("12_13_s")
    assert (labels == IGNORE_INDEX).any() and labels[labels < NUM_CLASSES].unique().tolist() == [0, 1, 2]
    prediction = torch.roll(labels, 12, dims=2).clamp(max=NUM_CLASSES - 1)
    loss = lovasz_softmax(confident(prediction), labels).item()
    assert 0.05 < loss == pytest.approx(1 - mean_iou(prediction, labels), abs=1e-5)


def sift_flow_labels(stem: str) -> torch.Tensor:
    """A SIFT Flow val label in its own 33 classes (ids 1-33; 0, "unlabeled", ignored), (1, H, W)."""
    with Image.open(DATASETS / "sift-flow" / "labels" / "val" / f"{stem}.png") as label:
        raw = torch.from_numpy(np.asarray(label).astype(np.int64))[None]
    return raw.masked_fill(raw == 0, IGNORE_INDEX)


def test_any_number_of_classes_here_sift_flows_own_33() -> None:
    """Not only the task's 4 classes: on SIFT Flow's own labels (34 logits, one per id) a confident prediction
    shifted by 12 pixels still costs 1 - mIoU; partial label values, which only the task's classes have, are
    refused."""
    labels = sift_flow_labels("coast_arnat59")
    assert labels[labels != IGNORE_INDEX].unique().tolist() == [4, 18, 25, 28]
    shifted = torch.roll(labels, 12, dims=2)
    prediction = shifted.masked_fill(shifted == IGNORE_INDEX, 0)  # a class id at every pixel
    loss = lovasz_softmax(confident(prediction, 34), labels).item()
    assert 0.05 < loss == pytest.approx(1 - mean_iou(prediction, labels, 34), abs=1e-5)
    with pytest.raises(ValueError, match="partial labels are defined for the 4 task classes only"):
        lovasz_softmax(torch.zeros(1, 34, 1, 1), torch.tensor([[[40]]]))  # no class id of 34 classes


def test_a_perfect_confident_prediction_costs_nothing_and_every_gradient_is_finite() -> None:
    labels = msrc_labels("12_13_s")
    logits = confident(labels.clamp(max=NUM_CLASSES - 1)).requires_grad_()
    loss = lovasz_softmax(logits, labels)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("labels", ["random", "ties", "all ignored"])
def test_gradients_are_finite_and_vanish_where_nothing_is_labelled(labels: str) -> None:
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(2, NUM_CLASSES, 8, 8, generator=generator)
    if labels == "ties":
        logits = torch.zeros_like(logits)  # every error equal
    target = torch.randint(0, NUM_CLASSES, (2, 8, 8), generator=generator)
    target[:, :2] = IGNORE_INDEX
    target[:, 2:3] = NOT_A_CAT
    if labels == "all ignored":
        target[:] = IGNORE_INDEX
    logits.requires_grad_()
    loss = lovasz_softmax(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert logits.grad[:, :, :3].abs().max() == 0  # ignored and partial pixels get no gradient
    if labels == "all ignored":
        assert loss.item() == 0.0
    else:
        assert logits.grad.abs().max() > 0


def test_wrong_inputs_are_value_errors() -> None:
    with pytest.raises(ValueError, match="class ids below 5 or 255"):
        lovasz_softmax(torch.zeros(1, 5, 1, 1), torch.tensor([[[NOT_A_CAT]]]))
    with pytest.raises(ValueError, match=r"logits of size \(2, 2\) for labels of size \(4, 4\)"):
        lovasz_softmax(torch.zeros(1, 4, 2, 2), torch.zeros(1, 4, 4, dtype=torch.long))
