"""One Transformer block of the Mix Transformer encoder (paper Section 3.1, Fig. 2)."""

import torch
from torch import nn

from segformer.efficient_self_attention import EfficientSelfAttention
from segformer.mix_ffn import MixFFN
from segformer.token_mixer import DepthwiseConvMixer


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero the whole residual branch of a random subset of samples, rescale the rest."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class MixTransformerEncoderLayer(nn.Module):
    """Pre-norm block: x + DropPath(Attn(LN(x))), then x + DropPath(MixFFN(LN(x))) (Eq. 1, Eq. 3).

    With ``token_mixer="dwconv"`` a depthwise convolution (``segformer.token_mixer``, held as ``conv_mixer``) takes
    the attention's place; ``ffn_activations`` and ``ffn_padding`` are the Mix-FFN's ablations (``segformer.mix_ffn``).
    """

    def __init__(
        self,
        dim: int,
        *,
        heads: int,
        sr_ratio: int,
        mlp_ratio: float,
        drop_path_rate: float,
        token_mixer: str = "attention",
        ffn_activations: int = 1,
        ffn_padding: str = "zeros",
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        if token_mixer == "attention":
            self.attention = EfficientSelfAttention(dim, heads=heads, sr_ratio=sr_ratio)
        elif token_mixer == "dwconv":
            self.conv_mixer = DepthwiseConvMixer(dim)
        else:
            raise ValueError(f"unknown token mixer {token_mixer!r}")
        self.token_mixer = token_mixer
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = MixFFN(dim, round(dim * mlp_ratio), activations=ffn_activations, padding=ffn_padding)
        self.drop_path_rate = drop_path_rate

    def smallest_grid(self) -> int:
        """The smallest grid side the block accepts: the key reduction ratio R (Eq. 2), and 2 for reflect padding."""
        sr_ratio = self.attention.sr_ratio if self.token_mixer == "attention" else 1
        return max(sr_ratio, 2 if self.ffn.dwconv.padding_mode == "reflect" else 1)

    def forward(
        self, x: torch.Tensor, height: int, width: int, return_attention: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.token_mixer == "attention":
            mixed, probs = self.attention(self.norm1(x), height, width, return_attention)
        else:
            mixed, probs = self.conv_mixer(self.norm1(x), height, width), None
        x = x + drop_path(mixed, self.drop_path_rate, self.training)
        x = x + drop_path(self.ffn(self.norm2(x), height, width), self.drop_path_rate, self.training)
        return x, probs
