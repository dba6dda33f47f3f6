"""Overlapped patch merging (paper Section 3.1, "Overlapped Patch Merging")."""

import torch
from torch import nn


class OverlapPatchMerging(nn.Module):
    """Strided convolution whose kernel overlaps its neighbours (K=7,S=4,P=3 or K=3,S=2,P=1), then LayerNorm.

    Maps (B, C_in, H, W) to tokens (B, H'*W', C_out) and returns the new grid size (H', W'),
    with H' = ceil(H / S) for any H.
    """

    def __init__(self, in_channels: int, out_channels: int, *, patch_size: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, out_channels, patch_size, stride=stride, padding=patch_size // 2)
        self.norm = nn.LayerNorm(out_channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        height, width = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), height, width
