"""Mean IoU done right: one confusion matrix over the whole dataset, IoU per class from it."""

import torch


def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = 255
) -> torch.Tensor:
    """(num_classes, num_classes) int64 counts; row = true class, column = predicted class.

    Pixels whose target is ``ignore_index`` are excluded.
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
    target = target.reshape(-1).long()
    keep = target != ignore_index
    index = target[keep] * num_classes + pred.reshape(-1).long()[keep]
    return torch.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def scores(confusion: torch.Tensor, class_names: list[str]) -> dict:
    """mIoU, per-class IoU and pixel accuracy of a dataset-wide confusion matrix.

    IoU_c = TP / (TP + FP + FN). A class absent from both truth and prediction has no IoU (NaN, reported as
    None) and is left out of the mean, as in mmsegmentation.
    """
    confusion = confusion.double()
    true_positive = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - true_positive
    iou = true_positive / union  # NaN where union == 0
    total = confusion.sum()
    return {
        "miou": iou.nanmean().item(),
        "pixel_acc": (true_positive.sum() / total).item() if total > 0 else float("nan"),
        "per_class_iou": {name: None if v.isnan() else v.item() for name, v in zip(class_names, iou, strict=True)},
        "pixels": int(total.item()),
    }
