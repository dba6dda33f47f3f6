"""A Feature Pyramid Network decoder (Lin et al., CVPR 2017), the ablation of the All-MLP decoder (Section 3.2).

The paper argues that the MiT encoder's large effective receptive field lets a decoder of per-pixel linear layers
(Eq. 4) do what CNN backbones need heavier decoders for. ``decoder="fpn"`` swaps in the classic alternative, with
3x3 convolutions that widen the receptive field in the decoder itself:

    L_i = Conv1x1(C_i, C)(F_i)                                     lateral connections
    P_4 = L_4,  P_i = L_i + Up2x(P_{i+1})                          top-down pathway (nearest, as Lin et al.)
    S_i = Conv3x3(C, C)(P_i)                                       smoothing, against the upsampling's aliasing
    F   = sum_i Upsample(H/4 x W/4)(S_i)                           the pyramid fused at 1/4 (bilinear, as Eq. 4)
    M   = Conv1x1(C, N_cls)(Dropout(ReLU(BatchNorm(F))))           the All-MLP decoder's head

As in Lin et al., the pyramid itself has no non-linearity; the head after the fusion is the All-MLP decoder's, so the
two decoders differ only in how the four stages are combined. Fusing by a sum (the semantic branch of Panoptic FPN,
Kirillov et al. 2019, also sums) keeps the decoder small; its width C is the config's ``decoder_dim``. With C = 96
SegFormer-B0's FPN decoder has 382,276 parameters for 4 classes, the All-MLP decoder at C = 256 395,780: a comparison
at (nearly) equal size (C = 256 would give the FPN 2.49M). It still costs more compute, mostly in the 3x3 smoothing at
1/4: 1.9 GMACs at 512 x 512, against 0.42 for the All-MLP decoder as folded here (4.6 in Eq. 4's order).
"""

import torch
import torch.nn.functional as F
from torch import nn


def upsample2x(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """Nearest 2x upsampling cropped to ``size``: cell (i, j) of the coarser grid covers 2i..2i+1, 2j..2j+1.

    The stride-2 merging puts coarse cell i over fine cell 2i, so where a fine side is odd (grids are rounded up)
    the crop drops the last, half-covered cell instead of stretching the grid.
    """
    return F.interpolate(x, scale_factor=2.0, mode="nearest")[..., : size[0], : size[1]]


class FPNDecoder(nn.Module):
    """Maps the four MiT feature maps to class logits at 1/4 of the input resolution, through an FPN."""

    def __init__(self, in_channels: tuple[int, ...], dim: int, num_classes: int, *, dropout: float) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in in_channels)
        self.smooth = nn.ModuleList(nn.Conv2d(dim, dim, 3, padding=1) for _ in in_channels)
        self.norm = nn.BatchNorm2d(dim)
        self.dropout = dropout
        self.classifier = nn.Conv2d(dim, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        laterals = [conv(feature) for conv, feature in zip(self.lateral, features, strict=True)]
        pyramid = [laterals[-1]]
        for lateral in laterals[-2::-1]:
            pyramid.insert(0, lateral + upsample2x(pyramid[0], lateral.shape[-2:]))
        size = features[0].shape[-2:]
        fused = self.smooth[0](pyramid[0])
        for smooth, level in zip(self.smooth[1:], pyramid[1:], strict=True):
            fused = fused + F.interpolate(smooth(level), size=size, mode="bilinear", align_corners=False)
        fused = F.dropout2d(F.relu(self.norm(fused)), self.dropout, self.training)
        return self.classifier(fused).contiguous()
