"""The bundled validation pairs against their ground truth: reading them, per-image scores (``train.metrics``), and
the disagreement map."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from segformer.images import IGNORE_COLOUR
from train.classes import IGNORE_INDEX
from train.metrics import confusion_matrix, scores

#: Colour of wrongly predicted pixels in the disagreement map.
WRONG_COLOUR = (255, 215, 0)


def read_pairs(folder: Path, split: str = "val") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{stem: (RGB image, class-id mask)} of a prepared folder (images/<split>/*.jpg, labels/<split>/*.png)."""
    pairs = {}
    for image_path in sorted((folder / "images" / split).glob("*.jpg")):
        with Image.open(image_path) as image, Image.open(folder / "labels" / split / f"{image_path.stem}.png") as mask:
            pairs[image_path.stem] = np.array(image.convert("RGB")), np.array(mask)
    return pairs


def disagreement(rgb: np.ndarray, prediction: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The photo in dimmed grey, wrongly predicted pixels in WRONG_COLOUR, unlabelled pixels in IGNORE_COLOUR."""
    grey = rgb.mean(axis=2, keepdims=True) * 0.45
    picture = np.repeat(grey, 3, axis=2).astype(np.uint8)
    picture[(prediction != truth) & (truth != IGNORE_INDEX)] = WRONG_COLOUR
    picture[truth == IGNORE_INDEX] = IGNORE_COLOUR
    return picture


def image_scores(prediction: np.ndarray, truth: np.ndarray, classes: tuple[str, ...]) -> dict:
    """Pixel accuracy, mIoU and IoU per class of one image (train.metrics), plus each class's pixel shares."""
    pred, target = torch.from_numpy(prediction), torch.from_numpy(truth)
    confusion = confusion_matrix(pred, target, len(classes), IGNORE_INDEX)
    result = scores(confusion, list(classes))
    labelled = max(int(confusion.sum()), 1)
    result["truth_share"] = (confusion.sum(1).double() / labelled).tolist()
    result["predicted_share"] = (confusion.sum(0).double() / labelled).tolist()
    result["ignored_share"] = float((truth == IGNORE_INDEX).mean())
    return result
