"""The hierarchical Mix Transformer encoder, MiT (paper Section 3.1), with the config's variants of its parts."""

import itertools

import torch
from torch import nn

from segformer.config import MiTConfig
from segformer.encoder_layer import MixTransformerEncoderLayer
from segformer.overlap_patch_merging import PatchMerging, tokens_to_grid


class MixTransformer(nn.Module):
    """Four stages, each: overlapped patch merging, ``depth`` encoder layers, LayerNorm.

    Returns the feature maps F_i of shape (B, C_i, H / 2^(i+1), W / 2^(i+1)) for i = 1..4 (grid sizes are
    rounded up: stage 1 has ceil(H / 4) rows; channels-last views of the stage's tokens), and, on request, every
    block's attention probabilities.
    """

    def __init__(self, config: MiTConfig, in_channels: int = 3) -> None:
        super().__init__()
        total = sum(config.depths)
        rates = [config.drop_path * i / max(total - 1, 1) for i in range(total)]
        channels = (in_channels, *config.widths[:-1])
        self.patch_merging = nn.ModuleList(
            PatchMerging(c_in, c_out, patch_size=k, stride=s, kind=config.patch_merging)
            for c_in, c_out, k, s in zip(channels, config.widths, config.patch_sizes, config.strides, strict=True)
        )
        # Stages 2-4 read the previous stage's tokens, a channels-last grid: their kernels are stored the same way
        # so that they are not reordered at every call (stage 1 reads the image, as it comes).
        for merge in self.patch_merging[1:]:
            merge.to(memory_format=torch.channels_last)
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
                        token_mixer=config.token_mixer,
                        ffn_activations=config.ffn_activations,
                        ffn_padding=config.ffn_padding,
                    )
                    for j in range(depth)
                )
            )
        self.norms = nn.ModuleList(nn.LayerNorm(width) for width in config.widths)

    def _fits(self, height: int, width: int) -> bool:
        """Whether every stage's grid is at least as large as its key reduction ratio R (Eq. 2), and at least 2
        with reflect padding in the Mix-FFN."""
        for merge, blocks in zip(self.patch_merging, self.blocks, strict=True):
            height, width = merge.grid_size(height, width)
            if min(height, width) < max(block.smallest_grid() for block in blocks):
                return False
        return True

    def smallest_side(self) -> int:
        """The smallest n for which an n x n input fits every stage (see ``_fits``): 29 for the paper's encoder,
        whose stage 1 (stride 4, padding 3) reduces keys by 8 x 8 and so needs a grid of 8."""
        return next(n for n in itertools.count(1) if self._fits(n, n))

    def check_input_size(self, height: int, width: int) -> None:
        """ValueError naming the smallest usable size when a (height, width) input is too small."""
        if not self._fits(height, width):
            smallest = self.smallest_side()
            reflect = any(block.ffn.dwconv.padding_mode == "reflect" for stage in self.blocks for block in stage)
            raise ValueError(
                f"input of {height}x{width} pixels is too small: the spatial reduction of the keys (Eq. 2)"
                f"{' and the reflect padding of the Mix-FFN (Eq. 3)' if reflect else ''} needs a height and width "
                f"of at least {smallest}x{smallest}"
            )

    def forward(
        self, x: torch.Tensor, return_attentions: bool = False
    ) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """Return (features, attentions); ``attentions[stage][block]`` is empty unless requested."""
        if return_attentions and any(block.token_mixer != "attention" for stage in self.blocks for block in stage):
            raise ValueError("return_attentions needs token_mixer='attention': this encoder mixes tokens without it")
        self.check_input_size(*x.shape[-2:])
        features: list[torch.Tensor] = []
        attentions: list[list[torch.Tensor]] = []
        for merge, blocks, norm in zip(self.patch_merging, self.blocks, self.norms, strict=True):
            tokens, height, width = merge(x)
            stage_attentions = []
            for block in blocks:
                tokens, probs = block(tokens, height, width, return_attentions)
                if probs is not None:
                    stage_attentions.append(probs)
            x = tokens_to_grid(norm(tokens), height, width)
            features.append(x)
            attentions.append(stage_attentions)
        return features, attentions
