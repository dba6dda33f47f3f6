"""Where one point of a photo attends: the attention of the last block of each MiT stage (the efficient
self-attention of Eq. 1-2, keys reduced by the stage's ratio R), spread over pixels and drawn over the photo."""

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from PIL import Image, ImageDraw

from segformer.images import MIN_SIDE
from segformer.predict import normalise, working_size
from segformer.segmenter import Segmenter

#: Longer side of the image the attention maps are computed and shown at.
ATTENTION_SIDE = 512


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
    reach: tuple[int, int]  # (height, width) of the pixels that some key covers; beyond: the grid's leftover rows

    @property
    def leftover(self) -> tuple[int, int]:
        """Rows and columns of the stage's query grid that no key covers (the grid's size modulo R)."""
        return self.grid[0] - self.keys[0] * self.sr_ratio, self.grid[1] - self.keys[1] * self.sr_ratio


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
def attention_maps(loaded: Segmenter, image: np.ndarray, point: tuple[float, float]) -> list[StageMap]:
    """Attention of the last block of each stage for the query token under ``point`` (x, y in ``image`` pixels).

    Stage s has an h x w grid of query tokens (stage 1: ceil(H/4) x ceil(W/4), then halved, rounded up) and
    attends to floor(h/sr) x floor(w/sr) keys, each the reduction of an sr x sr patch of the grid. A key's
    weight is spread (bilinearly) over the pixels of its patch; pixels of the grid's last rows and columns
    that no key covers (when sr does not divide the grid) get 0.
    """
    height, width = image.shape[:2]
    # A copy: a photo decoded by Pillow is a read-only array, which torch.from_numpy would warn of.
    x = normalise(torch.tensor(image).permute(2, 0, 1)[None], loaded.mean, loaded.std)
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
        maps.append(StageMap(stage + 1, len(blocks), *grids, sr, (row, col), stride, pixels, reach))
    return maps


#: Colour of the query point's mark (on the photo and on every map).
MARK_COLOUR = (0, 255, 255)


def mark_point(image: np.ndarray, point: tuple[float, float]) -> np.ndarray:
    """A copy of ``image`` with the query point marked: a cyan disc in a black ring, and a cross through it."""
    marked = Image.fromarray(image)
    draw = ImageDraw.Draw(marked)
    x, y = point
    radius = max(4, round(max(image.shape[:2]) / 80))
    for width, colour in ((3, (0, 0, 0)), (1, MARK_COLOUR)):
        draw.line((x - 3 * radius, y, x + 3 * radius, y), fill=colour, width=width)
        draw.line((x, y - 3 * radius, x, y + 3 * radius), fill=colour, width=width)
    draw.ellipse((x - radius, y - radius, x + radius, y + radius), outline=(0, 0, 0), width=2, fill=MARK_COLOUR)
    return np.asarray(marked)


def heatmap(image: np.ndarray, stage_map: StageMap, head: int | None, point: tuple[float, float]) -> np.ndarray:
    """One head's map (the mean over heads when ``head`` is None) scaled to its maximum, coloured (inferno)
    over the image, with the query token's grid cell outlined and the query point marked. Pixels that no key
    covers (the leftover rows and columns of the grid) show the photo in dimmed grey instead of a weight."""
    weights = stage_map.maps.mean(axis=0) if head is None else stage_map.maps[head]
    scaled = weights / max(float(weights.max()), 1e-12)
    colours = colormaps["inferno"](scaled)[..., :3] * 255.0
    pixels = 0.4 * image + 0.6 * colours
    reach_h, reach_w = stage_map.reach
    grey = image.mean(axis=2, keepdims=True) * 0.6 + 40
    pixels[reach_h:] = grey[reach_h:]
    pixels[:, reach_w:] = grey[:, reach_w:]
    blended = Image.fromarray(pixels.astype(np.uint8))
    draw = ImageDraw.Draw(blended)
    row, col = stage_map.query
    cell = stage_map.cell
    draw.rectangle((col * cell, row * cell, (col + 1) * cell - 1, (row + 1) * cell - 1), outline=MARK_COLOUR)
    return mark_point(np.asarray(blended), point)


def captioned_heatmaps(
    image: np.ndarray, stages: list[StageMap], point: tuple[float, float], each_head: bool
) -> list[tuple[np.ndarray, str]]:
    """The heatmaps of every stage (one per head, or each stage's mean over heads), each with its caption."""
    items = []
    for stage in stages:
        count = stage.maps.shape[0]
        for head in range(count) if each_head else [None]:
            who = f"head {head + 1}/{count}" if head is not None else f"mean of {count} heads"
            who = "its only head" if count == 1 else who
            caption = f"Stage {stage.stage}, {who}: {stage.keys[0]}×{stage.keys[1]} keys (R = {stage.sr_ratio})"
            items.append((heatmap(image, stage, head, point), caption))
    return items


def grids_table(stages: list[StageMap]) -> str:
    """A Markdown table of each stage's block shown, query and key grids, R, heads and uncovered rows×columns."""
    rows = [
        "| stage | block shown | query grid h×w | key grid ⌊h/R⌋×⌊w/R⌋ | R | heads | rows×columns no key covers |",
        "|---" * 7 + "|",
    ]
    for stage in stages:
        rows.append(
            f"| {stage.stage} | last ({stage.block} of {stage.block}) | {stage.grid[0]}×{stage.grid[1]} | "
            f"{stage.keys[0]}×{stage.keys[1]} | {stage.sr_ratio} | {stage.maps.shape[0]} | "
            f"{stage.leftover[0]}×{stage.leftover[1]} |"
        )
    return "\n".join(rows)
