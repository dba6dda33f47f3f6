"""SegFormer (Xie et al., NeurIPS 2021) built from the paper's parts."""

from segformer.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from segformer.config import PRESETS, MiTConfig, preset
from segformer.model import SegFormer
from segformer.predict import IMAGENET_MEAN, IMAGENET_STD, predict
from segformer.transformers_weights import from_pretrained

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PRESETS",
    "MiTConfig",
    "SegFormer",
    "from_pretrained",
    "load_checkpoint",
    "predict",
    "preset",
    "read_metadata",
    "save_checkpoint",
]
