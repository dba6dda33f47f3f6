"""The lightweight All-MLP decoder (paper Section 3.2, Eq. 4).

    F_i' = Linear(C_i, C)(F_i)                 per stage
    F_i' = Upsample(H/4 x W/4)(F_i')
    F    = Linear(4C, C)(Concat(F_i'))         the "fuse" layer, then BatchNorm and ReLU
    M    = Linear(C, N_cls)(F)

The per-stage Linear, the bilinear upsampling and the fuse Linear are all linear maps, and bilinear
upsampling (weights summing to one) commutes with any per-pixel linear map. So instead of
materialising four C-channel maps at 1/4 resolution and a 4C-channel concatenation, the fuse
weight is split into its four C x C blocks W_i, folded into the per-stage weights
(A_i = W_i L_i, a C x C_i matrix applied at each stage's own resolution) and the results are
upsampled and summed. The parameters are the paper's (and transformers' layout); only the order of
evaluation changes. In eval mode BatchNorm is folded into the same matrices.
"""

import torch
import torch.nn.functional as F
from torch import nn


class AllMLPDecoder(nn.Module):
    """Maps the four MiT feature maps to class logits at 1/4 of the input resolution (Eq. 4)."""

    def __init__(self, in_channels: tuple[int, ...], dim: int, num_classes: int, *, dropout: float) -> None:
        super().__init__()
        self.linear = nn.ModuleList(nn.Linear(c, dim) for c in in_channels)
        # The paper concatenates the upsampled maps deepest stage first: fuse input block 0 is stage 4.
        self.fuse = nn.Conv2d(dim * len(in_channels), dim, 1, bias=False)
        self.norm = nn.BatchNorm2d(dim)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(dim, num_classes, 1)

    def _folded(self) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Per-stage matrices A_i (dim x C_i) and the summed bias, with eval-mode BatchNorm folded in."""
        dim = self.norm.num_features
        blocks = self.fuse.weight.flatten(1).split(dim, dim=1)[::-1]  # block i now belongs to stage i
        weights = [w @ linear.weight for w, linear in zip(blocks, self.linear, strict=True)]
        bias = sum(w @ linear.bias for w, linear in zip(blocks, self.linear, strict=True))
        if not self.training:
            scale = self.norm.weight * torch.rsqrt(self.norm.running_var + self.norm.eps)
            weights = [scale[:, None] * w for w in weights]
            bias = scale * (bias - self.norm.running_mean) + self.norm.bias
        return weights, bias

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        weights, bias = self._folded()
        size = features[0].shape[-2:]
        fused = F.conv2d(features[0], weights[0][:, :, None, None], bias)
        for feature, weight in zip(features[1:], weights[1:], strict=True):
            projected = F.conv2d(feature, weight[:, :, None, None])
            fused = fused + F.interpolate(projected, size=size, mode="bilinear", align_corners=False)
        if self.training:
            fused = self.norm(fused)
        return self.classifier(self.dropout(F.relu(fused)))
