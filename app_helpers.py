"""What the app computes, apart from the page: checkpoints, safe decoding of uploads, overlays, scores, attention maps.

Nothing here imports gradio: app.py turns InputError and CheckpointError into messages on the page or at start.
Every segmentation goes through ``segformer.predict`` (the project's one prediction path).
"""

import math
import struct
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
from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError

import segformer
from segformer.model import SegFormer
from segformer.predict import normalise
from train.classes import CLASS_NAMES, IGNORE_INDEX, PALETTE
from train.metrics import confusion_matrix, scores

#: Longer side of the image the network sees when segmenting (the mask still comes back at full size).
MAX_SIDE = 1024
#: Longer side of the image the attention maps are computed and shown at.
ATTENTION_SIDE = 512
#: Longer side of the overlay sent to the page (the downloadable mask stays at full size).
DISPLAY_SIDE = 1024
#: Smallest side the network accepts at its working size: stage 1's 8x8 key reduction needs a grid of 8.
MIN_SIDE = 32
#: Largest image accepted (12000 x 9000 = 108 megapixels fits); larger ones are refused as decompression bombs.
MAX_PIXELS = 120_000_000
#: Colour of pixels without a label (ignored in scoring) in ground-truth pictures.
IGNORE_COLOUR = (255, 255, 255)
#: Colour of wrongly predicted pixels in the disagreement map.
WRONG_COLOUR = (255, 215, 0)
#: What Pillow raises for damaged data while decoding (after the header was read).
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error)


class InputError(ValueError):
    """An upload the app cannot segment; the message is meant for the page."""


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


# ---------------------------------------------------------------------------- decoding uploads


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB version of any PIL image: 16-bit and float scaled to 8 bits, transparency over white."""
    if image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if values.max(initial=0) > 255 else 255.0
        return Image.fromarray(np.clip(values * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", image.size, "white"), rgba).convert("RGB")
    return image.convert("RGB")


def check_size(width: int, height: int) -> None:
    """Refuse images too large (decompression bombs), too small, or too elongated for the network."""
    if width * height > MAX_PIXELS:
        raise InputError(
            f"The image is {width}x{height} ({width * height / 1e6:.0f} megapixels): more than the "
            f"{MAX_PIXELS / 1e6:.0f} megapixels this app accepts (possible decompression bomb)."
        )
    if min(width, height) < MIN_SIDE:
        raise InputError(f"The image is {width}x{height}: each side must be at least {MIN_SIDE} pixels.")
    if max(width, height) > min(width, height) * (MAX_SIDE // MIN_SIDE):
        raise InputError(
            f"The image is {width}x{height}: one side is more than {MAX_SIDE // MIN_SIDE} times the other, "
            f"too elongated for the network's {MAX_SIDE}-pixel working size."
        )


def read_image(path: str | Path) -> np.ndarray:
    """Decode an uploaded file into (H, W, 3) uint8 RGB, upright as its EXIF orientation says.

    Raises InputError with a readable message for anything that is not a usable image.
    """
    try:
        image = Image.open(path)
    except Image.DecompressionBombError as err:
        raise InputError(f"{err} This app accepts images up to {MAX_PIXELS / 1e6:.0f} megapixels.") from err
    except UnidentifiedImageError as err:
        raise InputError("The file is not an image format this app can read (JPEG, PNG, WebP, ...).") from err
    except OSError as err:
        raise InputError(f"The file cannot be read ({err}).") from err
    with image:
        check_size(*image.size)
        try:
            return np.array(_to_rgb(ImageOps.exif_transpose(image)))
        except DECODE_ERRORS as err:
            raise InputError(f"The image file is damaged or truncated and cannot be decoded ({err}).") from err


# ---------------------------------------------------------------------------- segmentation


def segment(loaded: LoadedModel, rgb: np.ndarray) -> tuple[np.ndarray, float, tuple[int, int]]:
    """(mask of class ids at the image's size, seconds in segformer.predict, working (width, height))."""
    height, width = rgb.shape[:2]
    scale = min(1.0, MAX_SIDE / max(height, width))
    working = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = torch.from_numpy(rgb).permute(2, 0, 1)
    start = time.perf_counter()
    mask = segformer.predict(loaded.model, image, mean=loaded.mean, std=loaded.std, max_side=MAX_SIDE)
    return mask.numpy(), time.perf_counter() - start, working


def class_shares(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """Share of the pixels of each class (ids beyond the classes excluded), as floats summing to 1."""
    counts = np.array([np.count_nonzero(mask == c) for c in range(num_classes)], dtype=np.float64)
    return counts / max(counts.sum(), 1.0)


def downscale(rgb: np.ndarray, mask: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    """Image (bilinear) and mask (nearest) with the longer side at most ``max_side``."""
    height, width = mask.shape
    if max(height, width) <= max_side:
        return rgb, mask
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(image), np.asarray(Image.fromarray(mask).resize(size, Image.Resampling.NEAREST))


def blend(rgb: np.ndarray, mask: np.ndarray, palette: np.ndarray, opacity: float) -> np.ndarray:
    """The photo with each pixel mixed toward its class colour: (1 - opacity) * photo + opacity * colour.

    Ids outside the palette (the ignore label) leave the photo as it is. Integer arithmetic in 1/256 steps keeps
    this to a few milliseconds at 1024 px, so the opacity slider can recolour without running the network.
    """
    alpha = np.zeros(256, dtype=np.uint16)
    alpha[: len(palette)] = round(min(max(opacity, 0.0), 1.0) * 256)
    weight = alpha[mask][..., None]  # 0 for ids outside the palette, so colourise's IGNORE_COLOUR has no effect
    mixed = rgb.astype(np.uint16) * (256 - weight) + colourise(mask, palette).astype(np.uint16) * weight + 128
    return (mixed >> 8).astype(np.uint8)


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


def colourise(mask: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """RGB picture of a class-id mask; ids outside the palette (the ignore label) in IGNORE_COLOUR."""
    lut = np.tile(np.asarray(IGNORE_COLOUR, dtype=np.uint8), (256, 1))
    lut[: len(palette)] = palette
    return lut[mask]


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
    if max(height, width) <= max_side:
        return rgb
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.array(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0))


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
