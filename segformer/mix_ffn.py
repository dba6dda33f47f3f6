"""Mix-FFN (paper Eq. 3): x_out = MLP(GELU(Conv3x3(MLP(x_in)))) + x_in.

The 3x3 depthwise convolution leaks positional information through zero padding, which is why
SegFormer needs no positional encoding. The residual is added by the encoder layer.
"""

import torch
import torch.nn.functional as F
from torch import nn

from segformer.overlap_patch_merging import grid_to_tokens, tokens_to_grid


class MixFFN(nn.Module):
    """Linear -> 3x3 depthwise conv (padding 'same') -> GELU -> Linear, on tokens (B, H*W, C)."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.dwconv = nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1, groups=hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        x = self.dwconv(tokens_to_grid(self.fc1(x), height, width))
        x = F.gelu(grid_to_tokens(x))
        return self.fc2(x)
