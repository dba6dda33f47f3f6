"""Mean IoU done right: one confusion matrix over the whole dataset, IoU per class from it.

Pixels with a partial label (task.classes: "one of these classes") have no single true class, so they are left
out of the confusion matrix and of mIoU. They are still informative: a prediction outside the admissible set is
wrong, so they are counted separately (``partial_counts``) for the rate of such predictions and for an IoU whose
false positives include them (on feral-cats, the person/animal IoU of a cat-or-not labelling). Partial labels are
defined for the task's NUM_CLASSES classes; scored with another number of classes, labels are class ids or ignore.
"""

import torch

from task.classes import NUM_CLASSES, PARTIAL_IDS, admissible_table


def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = 255
) -> torch.Tensor:
    """(num_classes, num_classes) int64 counts; row = true class, column = predicted class.

    Only single-class pixels count: ``ignore_index`` and partial label values (>= num_classes) are excluded.
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
    target = target.reshape(-1).long()
    keep = (target != ignore_index) & (target < num_classes)
    index = target[keep] * num_classes + pred.reshape(-1).long()[keep]
    return torch.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def partial_counts(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(len(PARTIAL_IDS), num_classes) int64: row i counts the predicted classes of pixels labelled PARTIAL_IDS[i]
    (none with other than the task's NUM_CLASSES classes: their labels are class ids)."""
    if num_classes != NUM_CLASSES:
        return torch.zeros(len(PARTIAL_IDS), num_classes, dtype=torch.int64, device=target.device)
    rows = torch.full((256,), -1, dtype=torch.long, device=target.device)
    rows[list(PARTIAL_IDS)] = torch.arange(len(PARTIAL_IDS), device=target.device)
    row = rows[target.reshape(-1).long()]
    keep = row >= 0
    index = row[keep] * num_classes + pred.reshape(-1).long()[keep]
    return torch.bincount(index, minlength=len(PARTIAL_IDS) * num_classes).reshape(len(PARTIAL_IDS), num_classes)


def scores(confusion: torch.Tensor, class_names: list[str], partial: torch.Tensor | None = None) -> dict:
    """mIoU, per-class IoU and pixel accuracy of a dataset-wide confusion matrix (single-class pixels).

    IoU_c = TP / (TP + FP + FN). A class absent from both truth and prediction has no IoU (NaN, reported as
    None) and is left out of the mean, as in mmsegmentation. Given the ``partial_counts`` of the same pixels, also
    ``partial_pixels``, ``outside_admissible`` (the share of partial pixels predicted outside their set; None
    without partial pixels) and ``per_class_iou_with_partial``: IoU_c with the partial pixels that exclude c but
    are predicted c added to its false positives.
    """
    confusion = confusion.double()
    true_positive = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - true_positive
    iou = true_positive / union  # NaN where union == 0
    total = confusion.sum()
    result = {
        "miou": iou.nanmean().item(),
        "pixel_acc": (true_positive.sum() / total).item() if total > 0 else float("nan"),
        "per_class_iou": _named(iou, class_names),
        "pixels": int(total.item()),
    }
    if partial is not None:
        partial = partial.double()
        wrong = torch.zeros_like(partial)  # partial pixels predicted outside their set (none but for the task's)
        if len(class_names) == NUM_CLASSES:
            wrong = torch.where(~torch.from_numpy(admissible_table()[list(PARTIAL_IDS)]), partial, wrong)
        n_partial = partial.sum()
        result["partial_pixels"] = int(n_partial.item())
        result["outside_admissible"] = (wrong.sum() / n_partial).item() if n_partial > 0 else None
        result["per_class_iou_with_partial"] = _named(true_positive / (union + wrong.sum(0)), class_names)
    return result


def _named(values: torch.Tensor, class_names: list[str]) -> dict[str, float | None]:
    return {name: None if v.isnan() else v.item() for name, v in zip(class_names, values, strict=True)}
