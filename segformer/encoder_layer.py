"""One Transformer block of the Mix Transformer encoder (paper Section 3.1, Fig. 2)."""

import torch
from torch import nn

from segformer.efficient_self_attention import EfficientSelfAttention
from segformer.mix_ffn import MixFFN


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero the whole residual branch of a random subset of samples, rescale the rest."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class MixTransformerEncoderLayer(nn.Module):
    """Pre-norm block: x + DropPath(Attn(LN(x))), then x + DropPath(MixFFN(LN(x))) (Eq. 1, Eq. 3)."""

    def __init__(self, dim: int, *, heads: int, sr_ratio: int, mlp_ratio: int, drop_path_rate: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = EfficientSelfAttention(dim, heads=heads, sr_ratio=sr_ratio)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = MixFFN(dim, dim * mlp_ratio)
        self.drop_path_rate = drop_path_rate

    def forward(
        self, x: torch.Tensor, height: int, width: int, return_attention: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, probs = self.attention(self.norm1(x), height, width, return_attention)
        x = x + drop_path(attended, self.drop_path_rate, self.training)
        x = x + drop_path(self.ffn(self.norm2(x), height, width), self.drop_path_rate, self.training)
        return x, probs
