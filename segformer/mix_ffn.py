"""Mix-FFN (paper Eq. 3): x_out = MLP(GELU(Conv3x3(MLP(x_in)))) + x_in.

The 3x3 depthwise convolution leaks positional information through zero padding, which is why SegFormer needs no
positional encoding (Section 3.1, after Eq. 3; the effect is Islam et al. 2020, "How much position information do
convolutional neural networks encode?"). The residual is added by the encoder layer.

Two ablations of Eq. 3 (config fields, the paper's values by default):

* ``padding``: the depthwise convolution's padding mode: "zeros" (the paper), or "replicate" / "reflect", which
  carry no more information about where the border is than the pixels next to it;
* ``activations``: 1 is Eq. 3's GELU after the depthwise convolution; 0 leaves it out (the block is then linear
  up to the residual); 2 adds a GELU after the first MLP as well, before the convolution.
"""

import torch
import torch.nn.functional as F
from torch import nn

from segformer.overlap_patch_merging import grid_to_tokens, tokens_to_grid


class MixFFN(nn.Module):
    """Linear -> 3x3 depthwise conv (padding 'same') -> GELU -> Linear, on tokens (B, H*W, C)."""

    def __init__(self, dim: int, hidden_dim: int, *, activations: int = 1, padding: str = "zeros") -> None:
        super().__init__()
        self.activations = activations
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.dwconv = nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1, groups=hidden_dim, padding_mode=padding)
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        x = self.fc1(x)
        if self.activations == 2:
            x = F.gelu(x)
        x = grid_to_tokens(self.dwconv(tokens_to_grid(x, height, width)))
        if self.activations >= 1:
            x = F.gelu(x)
        return self.fc2(x)
