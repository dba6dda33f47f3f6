"""The hierarchical Mix Transformer encoder, MiT (paper Section 3.1)."""

import torch
from torch import nn

from segformer.config import MiTConfig
from segformer.encoder_layer import MixTransformerEncoderLayer
from segformer.overlap_patch_merging import OverlapPatchMerging


class MixTransformer(nn.Module):
    """Four stages, each: overlapped patch merging, ``depth`` encoder layers, LayerNorm.

    Returns the feature maps F_i of shape (B, C_i, H / 2^(i+1), W / 2^(i+1)) for i = 1..4 (grid sizes are
    rounded up: stage 1 has ceil(H / 4) rows), and, on request, every block's attention probabilities.
    """

    def __init__(self, config: MiTConfig, in_channels: int = 3) -> None:
        super().__init__()
        total = sum(config.depths)
        rates = [config.drop_path * i / max(total - 1, 1) for i in range(total)]
        channels = (in_channels, *config.widths[:-1])
        self.patch_merging = nn.ModuleList(
            OverlapPatchMerging(c_in, c_out, patch_size=k, stride=s)
            for c_in, c_out, k, s in zip(channels, config.widths, config.patch_sizes, config.strides, strict=True)
        )
        self.blocks = nn.ModuleList()
        for stage, depth in enumerate(config.depths):
            first = sum(config.depths[:stage])
            self.blocks.append(
                nn.ModuleList(
                    MixTransformerEncoderLayer(
                        config.widths[stage],
                        heads=config.heads[stage],
                        sr_ratio=config.sr_ratios[stage],
                        mlp_ratio=config.mlp_ratio,
                        drop_path_rate=rates[first + j],
                    )
                    for j in range(depth)
                )
            )
        self.norms = nn.ModuleList(nn.LayerNorm(width) for width in config.widths)

    def forward(
        self, x: torch.Tensor, return_attentions: bool = False
    ) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """Return (features, attentions); ``attentions[stage][block]`` is empty unless requested."""
        features: list[torch.Tensor] = []
        attentions: list[list[torch.Tensor]] = []
        for merge, blocks, norm in zip(self.patch_merging, self.blocks, self.norms, strict=True):
            tokens, height, width = merge(x)
            stage_attentions = []
            for block in blocks:
                tokens, probs = block(tokens, height, width, return_attentions)
                if probs is not None:
                    stage_attentions.append(probs)
            x = norm(tokens).transpose(1, 2).unflatten(2, (height, width))
            features.append(x)
            attentions.append(stage_attentions)
        return features, attentions
