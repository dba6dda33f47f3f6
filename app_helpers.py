"""What the app computes, apart from the page: checkpoints, overlays, scores, attention maps.

Nothing here imports gradio: app.py turns InputError and CheckpointError into messages on the page or at start.
Uploads are decoded by ``segformer.images.read_image`` and every segmentation goes through ``segformer.predict``
(the project's one prediction path), as ``python -m segformer segment`` does.
"""

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import EntryNotFoundError
from matplotlib import colormaps
from PIL import Image, ImageDraw

import segformer
from segformer.images import IGNORE_COLOUR, MAX_SIDE, MIN_SIDE
from segformer.images import blend as blend
from segformer.images import colourise as colourise
from segformer.model import SegFormer
from segformer.predict import normalise, working_size
from train.classes import CLASS_NAMES, IGNORE_INDEX, PALETTE
from train.metrics import confusion_matrix, scores

#: Longer side of the image the attention maps are computed and shown at.
ATTENTION_SIDE = 512
#: Longer side of the overlay sent to the page (the downloadable mask stays at full size).
DISPLAY_SIDE = 1024
#: Colour of wrongly predicted pixels in the disagreement map.
WRONG_COLOUR = (255, 215, 0)


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreachable or unfit for the app; the message names it."""


@dataclass(frozen=True)
class LoadedModel:
    """A model in eval mode with what the app needs from its metadata."""

    model: SegFormer
    metadata: dict
    source: str
    classes: tuple[str, ...]
    palette: np.ndarray  # (classes, 3) uint8
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def parameters(self) -> int:
        """Number of parameters of the model."""
        return sum(p.numel() for p in self.model.parameters())


# ---------------------------------------------------------------------------- checkpoints


def resolve_checkpoint(spec: str) -> Path:
    """Local stem of a checkpoint given as a path or ``hf://ORG/REPO/NAME`` (fetched with hf_hub_download).

    Both ``NAME.safetensors`` and ``NAME.json`` are fetched; they land in the same snapshot folder of the
    Hugging Face cache (honouring HF_HUB_CACHE and HF_HUB_OFFLINE).
    """
    if not spec.startswith("hf://"):
        return Path(spec)
    parts = spec.removeprefix("hf://").strip("/").split("/")
    if len(parts) < 3 or not all(parts):
        raise CheckpointError(f"{spec}: expected hf://ORG/REPO/NAME (NAME.safetensors and NAME.json in the repo)")
    repo_id, name = "/".join(parts[:2]), "/".join(parts[2:]).removesuffix(".safetensors").removesuffix(".json")
    try:
        weights = hf_hub_download(repo_id, f"{name}.safetensors")
        hf_hub_download(repo_id, f"{name}.json")
    except (EntryNotFoundError, OSError, ValueError) as err:
        raise CheckpointError(f"cannot fetch checkpoint {spec} from the Hugging Face Hub: {err}") from err
    return Path(weights).with_suffix("")


def load_model(spec: str) -> LoadedModel:
    """Load the checkpoint ``spec`` (see resolve_checkpoint) and check that its metadata fits its model."""
    path = resolve_checkpoint(spec)
    try:
        model, meta = segformer.load_checkpoint(path)
    except (FileNotFoundError, ValueError, TypeError, KeyError, AttributeError) as err:
        raise CheckpointError(f"cannot load checkpoint {spec}: {err}") from err
    classes = tuple(meta.get("classes", CLASS_NAMES))
    palette = np.asarray(meta.get("palette", PALETTE), dtype=np.uint8)
    if not len(classes) == len(palette) == model.num_classes:
        raise CheckpointError(
            f"checkpoint {spec} does not fit the app: {model.num_classes} model outputs, "
            f"{len(classes)} class names and {len(palette)} palette colours in its metadata"
        )
    mean = tuple(meta.get("mean", segformer.IMAGENET_MEAN))
    std = tuple(meta.get("std", segformer.IMAGENET_STD))
    return LoadedModel(model, meta, spec, classes, palette, mean, std)


# ---------------------------------------------------------------------------- segmentation


def segment(loaded: LoadedModel, rgb: np.ndarray) -> tuple[np.ndarray, float, tuple[int, int]]:
    """(mask of class ids at the image's size, seconds in segformer.predict, working (width, height))."""
    work_height, work_width = working_size(*rgb.shape[:2], MAX_SIDE)
    start = time.perf_counter()
    mask = segformer.predict(loaded.model, rgb, mean=loaded.mean, std=loaded.std, max_side=MAX_SIDE)
    return mask.numpy(), time.perf_counter() - start, (work_width, work_height)


def class_shares(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """Share of the pixels of each class (ids beyond the classes excluded), as floats summing to 1."""
    counts = np.array([np.count_nonzero(mask == c) for c in range(num_classes)], dtype=np.float64)
    return counts / max(counts.sum(), 1.0)


def downscale(rgb: np.ndarray, mask: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    """Image (bilinear) and mask (nearest) with the longer side at most ``max_side``."""
    height, width = working_size(*mask.shape, max_side)
    if (height, width) == mask.shape:
        return rgb, mask
    size = (width, height)
    image = Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(image), np.asarray(Image.fromarray(mask).resize(size, Image.Resampling.NEAREST))


def palette_png(mask: np.ndarray, palette: Sequence[Sequence[int]] = PALETTE) -> Image.Image:
    """Class-id mask as a palette image: the ids stay the pixel values, viewers show the class colours."""
    image = Image.fromarray(mask.astype(np.uint8), mode="L").convert("P")
    colours = np.tile(np.asarray(IGNORE_COLOUR, dtype=np.uint8), (256, 1))  # the ignore id and unused ids
    colours[: len(palette)] = palette
    image.putpalette(colours.ravel().tolist())
    return image


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


# ---------------------------------------------------------------------------- attention


@dataclass(frozen=True)
class StageMap:
    """Where one query attends in one stage: per-head maps at the working image's size, and the grids."""

    stage: int
    block: int
    grid: tuple[int, int]
    keys: tuple[int, int]
    sr_ratio: int
    query: tuple[int, int]
    cell: int
    maps: np.ndarray  # (heads, H, W) attention weights upsampled to pixels, 0 outside the key grid's reach


def working_image(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """The image resized (bilinear) so that its longer side is at most ``max_side``, or more where needed to keep
    the shorter side at least MIN_SIDE (the smallest the network accepts)."""
    height, width = rgb.shape[:2]
    max_side = max(max_side, math.ceil(MIN_SIDE * max(height, width) / min(height, width)))
    work_height, work_width = working_size(height, width, max_side)
    if (work_height, work_width) == (height, width):
        return rgb
    return np.array(Image.fromarray(rgb).resize((work_width, work_height), Image.Resampling.BILINEAR, reducing_gap=2.0))


@torch.inference_mode()
def attention_maps(loaded: LoadedModel, image: np.ndarray, point: tuple[float, float]) -> list[StageMap]:
    """Attention of the last block of each stage for the query token under ``point`` (x, y in ``image`` pixels).

    Stage s has an h x w grid of query tokens (stage 1: ceil(H/4) x ceil(W/4), then halved, rounded up) and
    attends to floor(h/sr) x floor(w/sr) keys, each the reduction of an sr x sr patch of the grid. A key's
    weight is spread (bilinearly) over the pixels of its patch; pixels of the grid's last rows and columns
    that no key covers (when sr does not divide the grid) get 0.
    """
    height, width = image.shape[:2]
    x = normalise(torch.from_numpy(image).permute(2, 0, 1)[None], loaded.mean, loaded.std)
    _, attentions = loaded.model(x, return_attentions=True)
    config = loaded.model.config
    maps = []
    grid_h, grid_w, stride = height, width, 1
    for stage, (blocks, step, sr) in enumerate(zip(attentions, config.strides, config.sr_ratios, strict=True)):
        grid_h, grid_w, stride = math.ceil(grid_h / step), math.ceil(grid_w / step), stride * step
        keys_h, keys_w = grid_h // sr, grid_w // sr
        probs = blocks[-1][0]  # (heads, N, M) of the stage's last block
        if probs.shape[1:] != (grid_h * grid_w, keys_h * keys_w):
            raise RuntimeError(f"stage {stage + 1} attention has shape {tuple(probs.shape)}, not the expected grid")
        row = min(int(point[1] * grid_h / height), grid_h - 1)
        col = min(int(point[0] * grid_w / width), grid_w - 1)
        weights = probs[:, row * grid_w + col].reshape(-1, keys_h, keys_w)
        reach = (min(height, keys_h * sr * stride), min(width, keys_w * sr * stride))
        spread = F.interpolate(weights[None].float(), size=reach, mode="bilinear", align_corners=False)[0]
        pixels = np.zeros((weights.shape[0], height, width), dtype=np.float32)
        pixels[:, : reach[0], : reach[1]] = spread.numpy()
        grids = (grid_h, grid_w), (keys_h, keys_w)
        maps.append(StageMap(stage + 1, len(blocks), *grids, sr, (row, col), stride, pixels))
    return maps


def heatmap(image: np.ndarray, stage_map: StageMap, head: int | None, point: tuple[float, float]) -> np.ndarray:
    """One head's map (the mean over heads when ``head`` is None) scaled to its maximum, coloured (inferno)
    over the image, with the query token's grid cell outlined and the query point marked."""
    weights = stage_map.maps.mean(axis=0) if head is None else stage_map.maps[head]
    scaled = weights / max(float(weights.max()), 1e-12)
    colours = colormaps["inferno"](scaled)[..., :3] * 255.0
    blended = Image.fromarray((0.4 * image + 0.6 * colours).astype(np.uint8))
    draw = ImageDraw.Draw(blended)
    row, col = stage_map.query
    cell = stage_map.cell
    draw.rectangle((col * cell, row * cell, (col + 1) * cell - 1, (row + 1) * cell - 1), outline=(0, 255, 255))
    x, y = point
    radius = max(3, round(max(image.shape[:2]) / 100))
    draw.ellipse((x - radius, y - radius, x + radius, y + radius), outline=(0, 0, 0), fill=(0, 255, 255))
    return np.asarray(blended)
