"""Efficient self-attention (paper Eq. 1 and Eq. 2).

Attention(Q, K, V) = Softmax(Q K^T / sqrt(d_head)) V, where K and V are computed from a sequence
reduced by the ratio R: the (H*W, C) tokens are reshaped to the grid and passed through a
strided R x R convolution (the paper's Reshape + Linear of Eq. 2), then LayerNorm, leaving
N / R^2 keys for N = H*W queries. Complexity drops from O(N^2) to O(N^2 / R^2). (The paper writes
O(N^2 / R) with R its reduction of the sequence length, which is our R^2: an R x R patch becomes one key.)
"""

import torch
import torch.nn.functional as F
from torch import nn

from segformer.overlap_patch_merging import grid_to_tokens, tokens_to_grid


class EfficientSelfAttention(nn.Module):
    """Multi-head attention with spatially reduced keys and values (Eq. 1-2).

    ``forward(x, height, width, return_attention)`` takes tokens (B, N, C) with N = height * width and
    returns (B, N, C); with ``return_attention`` also the attention probabilities of shape
    (B, heads, N, M) with M = floor(H / sr) * floor(W / sr) reduced keys (M = N / sr^2 when sr divides
    the grid; M = N when sr = 1).
    """

    def __init__(self, dim: int, *, heads: int, sr_ratio: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.sr_ratio = sr_ratio
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        if sr_ratio > 1:
            # Stored channels-last like the tokens it reads, so that it is not reordered at every call.
            self.reduction = nn.Conv2d(dim, dim, sr_ratio, stride=sr_ratio).to(memory_format=torch.channels_last)
            self.reduction_norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, dim)

    def _reduce(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        if self.sr_ratio == 1:
            return x
        return self.reduction_norm(grid_to_tokens(self.reduction(tokens_to_grid(x, height, width))))

    def forward(
        self, x: torch.Tensor, height: int, width: int, return_attention: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, tokens, dim = x.shape
        head_dim = dim // self.heads
        reduced = self._reduce(x, height, width)
        # Keys and values share one matrix product: the two Linear layers stay separate parameters.
        kv = F.linear(
            reduced, torch.cat([self.key.weight, self.value.weight]), torch.cat([self.key.bias, self.value.bias])
        )
        q = self.query(x).view(batch, tokens, self.heads, head_dim).transpose(1, 2)
        k, v = kv.view(batch, -1, 2, self.heads, head_dim).permute(2, 0, 3, 1, 4)
        if return_attention:
            probs = torch.softmax((q @ k.transpose(-2, -1)) * head_dim**-0.5, dim=-1)
            context = probs @ v
        else:
            probs = None
            context = F.scaled_dot_product_attention(q, k, v)
        return self.out(context.transpose(1, 2).reshape(batch, tokens, dim)), probs
