"""A checkpoint's model with the preprocessing its metadata prescribes: one call from a photo to its mask.

As in transformers' ``pipeline("image-segmentation")`` or mmsegmentation's ``MMSegInferencer``, the checkpoint's
metadata decides the preprocessing, once: the normalisation (``mean``, ``std``) and the working scale
(``working_short_side``: each image scaled so that its shorter side is that long, as the paper evaluates with the
short side rescaled to the training crop size and the aspect ratio kept, Xie et al., NeurIPS 2021, Section 4.1;
then down so that its longer side is at most ``max_side``, the app's ``segformer.images.MAX_SIDE`` by default).
The mask comes back at the image's own size, the logits upsampled before the argmax (``segformer.predict``, which
:class:`Segmenter` calls with these settings): the app's masks. ``python -m segformer segment`` and the benchmarks
segment through it.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike
from typing import Any

import numpy as np
import torch
from PIL import Image

from segformer.checkpoint import load_checkpoint, working_short_side
from segformer.images import MAX_SIDE
from segformer.model import SegFormer
from segformer.predict import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    as_images,
    predict,
    upsample_logits,
    working_logits,
)

#: What a Segmenter takes: one RGB image (a PIL image of any mode, an (H, W, 3) array, a (3, H, W) tensor), a batch
#: of images of one size ((B, H, W, 3) array, (B, 3, H, W) tensor; uint8, or float in [0, 1]) or a list of either.
Images = Image.Image | np.ndarray | torch.Tensor


@dataclass(frozen=True, eq=False)
class Segmenter:
    """A model in eval mode and the preprocessing its weights were trained with.

    ``seg(images)`` gives the class ids (uint8 tensor, (H, W) or (B, H, W)) at the images' own size,
    ``seg.probabilities(images)`` the softmax of the upsampled logits ((K, H, W) or (B, K, H, W) float32, whose
    argmax is that mask); a list of images gives a list of results, each image at its own size.
    """

    model: SegFormer
    classes: tuple[str, ...]
    palette: np.ndarray  # (classes, 3) uint8: the colour of each class in overlays
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    short_side: int | None = None  # the working scale: images' shorter side before the network, or None (own size)
    max_side: int | None = MAX_SIDE  # the longer side of the working size at most this
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str | None = None  # where the weights came from: the checkpoint as it was named

    def __post_init__(self) -> None:
        if not len(self.classes) == len(self.palette) == self.model.num_classes:
            raise ValueError(
                f"{self.model.num_classes} model outputs, but {len(self.classes)} class names and "
                f"{len(self.palette)} palette colours"
            )

    @property
    def parameters(self) -> int:
        """Number of parameters of the model."""
        return sum(p.numel() for p in self.model.parameters())

    @classmethod
    def from_checkpoint(cls, spec: str | PathLike, *, max_side: int | None = MAX_SIDE) -> "Segmenter":
        """The checkpoint ``spec`` (a stem or either of its files, or ``hf://ORG/REPO/NAME``) with the classes,
        palette, normalisation and working scale of its metadata; ValueError when they do not fit its model."""
        model, meta = load_checkpoint(spec)
        missing = [key for key in ("classes", "palette") if key not in meta]
        if missing:
            raise ValueError(f"checkpoint {spec} has no {' or '.join(missing)} in its metadata")
        try:
            return cls(
                model,
                tuple(meta["classes"]),
                np.asarray(meta["palette"], dtype=np.uint8),
                mean=tuple(meta.get("mean", IMAGENET_MEAN)),
                std=tuple(meta.get("std", IMAGENET_STD)),
                short_side=working_short_side(meta),
                max_side=max_side,
                metadata=meta,
                source=str(spec),
            )
        except ValueError as err:
            raise ValueError(f"checkpoint {spec} does not fit its metadata: {err}") from err

    def __call__(self, images: Images | Sequence[Images]) -> torch.Tensor | list[torch.Tensor]:
        """Class ids (uint8) at the size of each image: exactly ``segformer.predict`` with these settings."""
        if isinstance(images, list | tuple):
            return [self(image) for image in images]
        return predict(
            self.model,
            batch_tensor(images),
            mean=self.mean,
            std=self.std,
            max_side=self.max_side,
            short_side=self.short_side,
        )

    @torch.inference_mode()
    def logits(self, images: Images | Sequence[Images]) -> torch.Tensor | list[torch.Tensor]:
        """Class logits (float32, (K, H, W) or (B, K, H, W)) of the network at the working size, bilinearly upsampled
        to the images' own size: the values whose argmax ``seg(images)`` is."""
        if isinstance(images, list | tuple):
            return [self.logits(image) for image in images]
        batch = as_images(batch_tensor(images))
        single = batch.ndim == 3
        logits = working_logits(
            self.model, batch[None] if single else batch, self.mean, self.std, self.max_side, self.short_side
        )
        full = upsample_logits(logits.float(), (batch.shape[-2], batch.shape[-1]))
        return full[0] if single else full

    @torch.inference_mode()
    def probabilities(self, images: Images | Sequence[Images]) -> torch.Tensor | list[torch.Tensor]:
        """Softmax over the classes of :meth:`logits`, at the images' own size."""
        logits = self.logits(images)
        if isinstance(logits, list):
            return [item.softmax(-3) for item in logits]
        return logits.softmax(-3)


def batch_tensor(images: Images) -> Image.Image | np.ndarray | torch.Tensor:
    """A numpy batch (B, H, W, 3) as the (B, 3, H, W) tensor view ``segformer.predict`` takes; anything else as is."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return torch.from_numpy(np.require(images, requirements=("C", "W"))).permute(0, 3, 1, 2)
    return images
