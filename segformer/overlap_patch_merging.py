"""Overlapped patch merging (paper Section 3.1, "Overlapped Patch Merging"), its two ablations, and the token <-> grid
layout.

The paper merges patches with a strided convolution whose kernel overlaps its neighbours (K=7, S=4, P=3 for the
first stage, K=3, S=2, P=1 after), as PVT v2 (Wang et al. 2022, "overlapping patch embedding") does, to keep the
local continuity around patches that ViT's and PVT v1's non-overlapping patches break. ``patch_merging`` in the
config picks one of:

* "overlap": the paper's (K, S, P = K // 2) convolution;
* "non_overlap": a convolution with kernel = stride and no padding (ViT, PVT v1);
* "max_pool": max-pooling over S x S windows, then a linear projection (1x1 convolution) to the new width.

All three are followed by LayerNorm and give a grid of ceil(H / S) x ceil(W / S) for any H, W (the decoder and the
model's output size rely on it): where S does not divide H, "non_overlap" pads the bottom and right with zeros, as
the overlapping convolution does, and "max_pool" pools the last, partial window over the pixels it has
(``ceil_mode``).

Tokens (B, H*W, C) and the grid (B, C, H, W) share one memory layout: the grid is a channels-last view of the
tokens, so the convolutions of Eq. 2 and Eq. 3 read the tokens without copying them.
"""

import torch
import torch.nn.functional as F
from torch import nn


def tokens_to_grid(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, H*W, C) tokens -> (B, C, H, W) channels-last view of the same memory."""
    return x.view(x.shape[0], height, width, x.shape[2]).permute(0, 3, 1, 2)


def grid_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W, C) tokens (a view when ``x`` is channels-last)."""
    return x.flatten(2).transpose(1, 2)


class PatchMerging(nn.Module):
    """Downsample by the stride S and widen to ``out_channels`` (``kind``: see the module docstring), then LayerNorm.

    Maps (B, C_in, H, W) to tokens (B, H'*W', C_out) and returns the new grid size (H', W'),
    with H' = ceil(H / S) for any H. ``patch_size`` is the kernel of "overlap" only.
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, patch_size: int, stride: int, kind: str = "overlap"
    ) -> None:
        super().__init__()
        self.kind = kind
        self.stride = stride
        if kind == "overlap":
            self.proj = nn.Conv2d(in_channels, out_channels, patch_size, stride=stride, padding=patch_size // 2)
        elif kind == "non_overlap":
            self.proj = nn.Conv2d(in_channels, out_channels, stride, stride=stride)
        elif kind == "max_pool":
            self.proj = nn.Conv2d(in_channels, out_channels, 1)
        else:
            raise ValueError(f"unknown patch merging {kind!r}")
        self.norm = nn.LayerNorm(out_channels)

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """(H', W') of the tokens made from a (height, width) input."""
        if self.kind == "overlap":
            (k, _), (s, _), (p, _) = self.proj.kernel_size, self.proj.stride, self.proj.padding
            return (height + 2 * p - k) // s + 1, (width + 2 * p - k) // s + 1
        return -(-height // self.stride), -(-width // self.stride)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        if self.kind == "non_overlap":
            x = F.pad(x, (0, -x.shape[-1] % self.stride, 0, -x.shape[-2] % self.stride))
        elif self.kind == "max_pool":
            x = F.max_pool2d(x, self.stride, ceil_mode=True)
        x = self.proj(x)
        height, width = x.shape[-2:]
        return self.norm(grid_to_tokens(x)), height, width
