"""Overlapped patch merging (paper Section 3.1, "Overlapped Patch Merging"), and the token <-> grid layout.

Tokens (B, H*W, C) and the grid (B, C, H, W) share one memory layout: the grid is a channels-last view of the
tokens, so the convolutions of Eq. 2 and Eq. 3 read the tokens without copying them.
"""

import torch
from torch import nn


def tokens_to_grid(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, H*W, C) tokens -> (B, C, H, W) channels-last view of the same memory."""
    return x.view(x.shape[0], height, width, x.shape[2]).permute(0, 3, 1, 2)


def grid_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W, C) tokens (a view when ``x`` is channels-last)."""
    return x.flatten(2).transpose(1, 2)


class OverlapPatchMerging(nn.Module):
    """Strided convolution whose kernel overlaps its neighbours (K=7,S=4,P=3 or K=3,S=2,P=1), then LayerNorm.

    Maps (B, C_in, H, W) to tokens (B, H'*W', C_out) and returns the new grid size (H', W'),
    with H' = ceil(H / S) for any H.
    """

    def __init__(self, in_channels: int, out_channels: int, *, patch_size: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, out_channels, patch_size, stride=stride, padding=patch_size // 2)
        self.norm = nn.LayerNorm(out_channels)

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """(H', W') of the tokens made from a (height, width) input."""
        (k, _), (s, _), (p, _) = self.proj.kernel_size, self.proj.stride, self.proj.padding
        return (height + 2 * p - k) // s + 1, (width + 2 * p - k) // s + 1

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        height, width = x.shape[-2:]
        return self.norm(grid_to_tokens(x)), height, width
