"""The bundled validation pairs against their ground truth: reading them, per-image scores, and pictures.

Labels hold task ids, IGNORE_INDEX (not labelled) and partial labels (``task.classes``: a value >= PARTIAL_BASE
admits a set of classes, such as feral-cats' "not a cat" = background, plant or vehicle). As in ``task.metrics``,
IoU and pixel accuracy count single-class pixels only; a partial pixel is wrong only when predicted outside its set.
"""

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from segformer.images import IGNORE_COLOUR, colourise
from task.classes import IGNORE_INDEX, PARTIAL_IDS, SOURCE_TABLES, admissible_table, label_id, partial_name
from task.metrics import confusion_matrix, partial_counts, scores

#: Colour of wrongly predicted pixels in the disagreement map.
WRONG_COLOUR = (255, 215, 0)
#: Partially labelled pixels are drawn as diagonal stripes of these two light greys, each HATCH_WIDTH pixels wide.
HATCH_COLOURS = ((170, 170, 170), (215, 215, 215))
HATCH_WIDTH = 4
#: ADMISSIBLE[label value, class]: whether the label admits the class (no class for IGNORE_INDEX).
ADMISSIBLE = admissible_table()


def read_pairs(folder: Path, split: str = "val") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{stem: (RGB image, label mask)} of a prepared folder (images/<split>/*.jpg, labels/<split>/*.png)."""
    pairs = {}
    for image_path in sorted((folder / "images" / split).glob("*.jpg")):
        with Image.open(image_path) as image, Image.open(folder / "labels" / split / f"{image_path.stem}.png") as mask:
            pairs[image_path.stem] = np.array(image.convert("RGB")), np.array(mask)
    return pairs


def truth_picture(truth: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """RGB picture of a label mask: class colours, IGNORE_COLOUR where not labelled, light grey stripes
    (HATCH_COLOURS) where the label is partial."""
    picture = colourise(truth, palette)
    rows, cols = np.indices(truth.shape)
    stripe = (rows + cols) // HATCH_WIDTH % 2
    partial = np.isin(truth, PARTIAL_IDS)
    picture[partial] = np.asarray(HATCH_COLOURS, dtype=np.uint8)[stripe[partial]]
    return picture


def disagreement(rgb: np.ndarray, prediction: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The photo in dimmed grey; in WRONG_COLOUR the pixels predicted as a class their label does not admit (another
    class, or one outside a partial label's set); unlabelled pixels in IGNORE_COLOUR."""
    grey = rgb.mean(axis=2, keepdims=True) * 0.45
    picture = np.repeat(grey, 3, axis=2).astype(np.uint8)
    picture[~ADMISSIBLE[truth, prediction]] = WRONG_COLOUR
    picture[truth == IGNORE_INDEX] = IGNORE_COLOUR
    return picture


def image_scores(prediction: np.ndarray, truth: np.ndarray, classes: tuple[str, ...]) -> dict:
    """Scores of one image by task.metrics: pixel accuracy, mIoU and IoU per class over its single-class pixels,
    and ``outside_admissible``, the share of its partial pixels predicted outside their set (None without any).

    Also each class's share of the labelled pixels (single-class and partial) in truth (``truth_share``; partial
    pixels belong to no class) and in the prediction (``predicted_share``), and the shares of all pixels that are
    not labelled (``ignored_share``) or partially labelled (``partial_share``).
    """
    pred, target = torch.from_numpy(prediction), torch.from_numpy(truth)
    confusion = confusion_matrix(pred, target, len(classes), IGNORE_INDEX)
    partial = partial_counts(pred, target, len(classes))
    result = scores(confusion, list(classes), partial)
    labelled = max(int(confusion.sum() + partial.sum()), 1)
    result["truth_share"] = (confusion.sum(1).double() / labelled).tolist()
    result["predicted_share"] = ((confusion.sum(0) + partial.sum(0)).double() / labelled).tolist()
    result["ignored_share"] = float((truth == IGNORE_INDEX).mean())
    result["partial_share"] = float(np.isin(truth, PARTIAL_IDS).mean())
    return result


def pooled_scores(pairs: list[tuple[np.ndarray, np.ndarray]], classes: tuple[str, ...]) -> dict:
    """Scores (task.metrics) of (prediction, truth) pairs pooled as one set: the pixels of all images counted
    together, as the model card pools a val split, not a mean of per-image scores."""
    confusion = sum(
        confusion_matrix(torch.from_numpy(p), torch.from_numpy(t), len(classes), IGNORE_INDEX) for p, t in pairs
    )
    partial = sum(partial_counts(torch.from_numpy(p), torch.from_numpy(t), len(classes)) for p, t in pairs)
    return scores(confusion, list(classes), partial)


def partial_labels(truth: np.ndarray, source: str) -> list[str]:
    """The partial labels in ``truth`` by their classes, and by the source's own name where its table has one:
    'background|plant|vehicle ("not a cat")'."""
    table = SOURCE_TABLES.get(source, {})
    names = []
    for value in sorted(set(np.unique(truth).tolist()) & set(PARTIAL_IDS)):
        own = ", ".join(f'"{name}"' for name, label in table.items() if label_id(label) == value)
        names.append(f"{partial_name(value)} ({own})" if own else partial_name(value))
    return names


def example_label(name: str) -> str:
    """How the page names a bundled validation example (``source__stem``): 'source: stem'."""
    return name.replace("__", ": ", 1)


def example_report(
    name: str, rgb: np.ndarray, truth: np.ndarray, prediction: np.ndarray, seconds: float, classes: tuple[str, ...]
) -> tuple[list[list[str]], str]:
    """One validation example's table (class, IoU, truth share, predicted share; '—' for a class absent from both)
    and its summary in Markdown: size, pixel accuracy, mIoU, the unscored and partially labelled shares, and the
    inference time. ``name`` is ``source__stem``; the source names its partial labels."""
    result = image_scores(prediction, truth, classes)
    rows = [
        [cls, "—" if iou is None else f"{iou:.3f}", f"{truth_share:.1%}", f"{predicted_share:.1%}"]
        for (cls, iou), truth_share, predicted_share in zip(
            result["per_class_iou"].items(), result["truth_share"], result["predicted_share"], strict=True
        )
    ]
    summary = (
        f"**{example_label(name)}** ({rgb.shape[1]}×{rgb.shape[0]}): pixel accuracy "
        f"**{result['pixel_acc']:.1%}**, mIoU **{result['miou']:.3f}** over the classes present in truth or "
        f"prediction (— = absent from both). {result['ignored_share']:.0%} of the pixels are not labelled and "
        "not scored. "
    )
    if result["partial_share"]:
        summary += (
            f"{result['partial_share']:.0%} of the pixels have a partial label (hatched: "
            f"{', '.join(partial_labels(truth, name.split('__')[0]))}): left out of IoU and pixel accuracy, and "
            f"{result['outside_admissible']:.1%} of them are predicted as a class outside their set. "
        )
    return rows, summary + f"Inference {seconds:.2f} s."
