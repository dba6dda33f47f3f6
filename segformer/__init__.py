"""SegFormer (Xie et al., NeurIPS 2021) built from the paper's parts."""

from segformer.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from segformer.config import PRESETS, MiTConfig, preset
from segformer.images import InputError, read_image
from segformer.model import SegFormer
from segformer.predict import IMAGENET_MEAN, IMAGENET_STD, predict, upsampled_argmax, working_size
from segformer.segmenter import Segmenter
from segformer.transformers_weights import from_pretrained

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PRESETS",
    "InputError",
    "MiTConfig",
    "SegFormer",
    "Segmenter",
    "from_pretrained",
    "load_checkpoint",
    "predict",
    "preset",
    "read_image",
    "read_metadata",
    "save_checkpoint",
    "upsampled_argmax",
    "working_size",
]
