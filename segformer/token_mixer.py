"""A depthwise-convolution token mixer: the ablation of efficient self-attention (Eq. 1-2) in the MiT blocks.

The paper credits the encoder's large effective receptive field (Section 3.2, Fig. 3) to self-attention. To measure
what the attention itself contributes, ``token_mixer="dwconv"`` replaces it in every block, keeping the block's
width, depth, pre-norm, residual, drop path and Mix-FFN, by a k x k depthwise convolution (k = 7, zero padding)
followed by a pointwise Linear: the token mixer of the MetaFormer view (Yu et al., CVPR 2022, "MetaFormer is
actually what you need for vision"), with ConvNeXt's 7 x 7 depthwise kernel (Liu et al., CVPR 2022). Each block then
sees a 7 x 7 neighbourhood of its stage's grid instead of the whole image.
"""

import torch
from torch import nn

from segformer.overlap_patch_merging import grid_to_tokens, tokens_to_grid

KERNEL_SIZE = 7


class DepthwiseConvMixer(nn.Module):
    """k x k depthwise conv (padding 'same') -> Linear, on tokens (B, H*W, C); no attention to return."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        # Stored channels-last like the tokens it reads, so that it is not reordered at every call.
        self.dwconv = nn.Conv2d(dim, dim, KERNEL_SIZE, padding=KERNEL_SIZE // 2, groups=dim).to(
            memory_format=torch.channels_last
        )
        self.pointwise = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        return self.pointwise(grid_to_tokens(self.dwconv(tokens_to_grid(x, height, width))))
