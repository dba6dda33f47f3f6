"""The lightweight All-MLP decoder (paper Section 3.2, Eq. 4).

    F_i' = Linear(C_i, C)(F_i)                 per stage
    F_i' = Upsample(H/4 x W/4)(F_i')
    F    = Linear(4C, C)(Concat(F_i'))         the "fuse" layer, then BatchNorm and ReLU
    M    = Linear(C, N_cls)(F)

The per-stage Linear, the bilinear upsampling and the fuse Linear are all linear maps, and bilinear
upsampling (weights summing to one) commutes with any per-pixel linear map. So instead of
materialising four C-channel maps at 1/4 resolution and a 4C-channel concatenation, the fuse
weight is split into its four C x C blocks W_i, folded into the per-stage weights
(A_i = W_i L_i, a C x C_i matrix applied at each stage's own resolution) and the results are
upsampled and summed. The parameters are the paper's (and transformers' layout); only the order of
evaluation changes. In eval mode BatchNorm is folded into the same matrices. ``forward`` evaluates this folded
order; ``forward_literal`` evaluates Eq. 4 line by line, as written above, on the same parameters.

Each stage's term is upsampled by ``F.interpolate`` on its channels-last map (a bilinear tap reads two rows
and two columns, where a product with the dense interpolation matrices would read all of them) and added in place
into F, which starts as the deepest stage's upsampled term; stage 1's needs no upsampling and is added by a matrix
product on the tokens. Only the 1/4-resolution sum and one upsampled term exist at a time, never the 4C-channel
concatenation. F is kept channels-last (tokens), which is also what the classifier's matrix product wants, and it
exports to ONNX as Resize, so one exported graph serves every input size (``train.export --onnx``).
"""

import torch
import torch.nn.functional as F
from torch import nn

from segformer.overlap_patch_merging import grid_to_tokens, tokens_to_grid


class AllMLPDecoder(nn.Module):
    """Maps the four MiT feature maps to class logits at 1/4 of the input resolution (Eq. 4).

    ``dropout`` before the classifier drops whole channels per sample (``Dropout2d``, as the reference
    implementation's decode head), which lets the mask act on the classifier's weights instead of on the map.
    """

    def __init__(self, in_channels: tuple[int, ...], dim: int, num_classes: int, *, dropout: float) -> None:
        super().__init__()
        self.linear = nn.ModuleList(nn.Linear(c, dim) for c in in_channels)
        # The paper concatenates the upsampled maps deepest stage first: fuse input block 0 is stage 4.
        self.fuse = nn.Conv2d(dim * len(in_channels), dim, 1, bias=False)
        self.norm = nn.BatchNorm2d(dim)
        self.dropout = dropout
        self.classifier = nn.Conv2d(dim, num_classes, 1)

    def _folded(self) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Per-stage matrices A_i (dim x C_i) and the summed bias, with eval-mode BatchNorm folded in."""
        fuse = self.fuse.weight.flatten(1)
        if not self.training:
            scale = self.norm.weight * torch.rsqrt(self.norm.running_var + self.norm.eps)
            fuse = scale[:, None] * fuse
        blocks = fuse.split(self.norm.num_features, dim=1)[::-1]  # block i now belongs to stage i
        weights = [w @ linear.weight for w, linear in zip(blocks, self.linear, strict=True)]
        bias = fuse @ torch.cat([linear.bias for linear in self.linear[::-1]])
        if not self.training:
            bias = bias + (self.norm.bias - scale * self.norm.running_mean)
        return weights, bias

    def _fused(self, features: list[torch.Tensor]) -> torch.Tensor:
        """F before BatchNorm (after it, in eval) as a channels-last (B, dim, H/4, W/4) map."""
        weights, bias = self._folded()
        batch, _, height, width = features[0].shape
        dim = bias.shape[0]
        # Upsampling keeps constants, so the bias joins the smallest map, stage 4's. Autocast may run the
        # upsampling in another dtype than the projection (float32 on CPU): the sum takes the first term's.
        fused = None
        for feature, weight in zip(features[:0:-1], weights[:0:-1], strict=True):
            h, w = feature.shape[-2:]
            projected = F.linear(grid_to_tokens(feature), weight, bias if fused is None else None)
            term = F.interpolate(
                tokens_to_grid(projected, h, w), size=(height, width), mode="bilinear", align_corners=False
            )
            # The first term is the sum, channels-last (a 1x1 grid's upsampling may come back in either layout).
            fused = term.contiguous(memory_format=torch.channels_last) if fused is None else fused.add_(term)
        # Stage 1 needs no upsampling: its term is added by a product on the tokens (B, H/4 * W/4, dim), a view of
        # the channels-last sum: in place unless autograd records it (it would copy the gradient twice, more than
        # the out-of-place product costs).
        tokens, stage1 = grid_to_tokens(fused), weights[0].T.expand(batch, -1, -1)
        if torch.is_grad_enabled():
            tokens = torch.baddbmm(tokens, grid_to_tokens(features[0]), stage1)
        else:
            tokens.baddbmm_(grid_to_tokens(features[0]).to(tokens.dtype), stage1)
        return tokens.view(batch, height, width, dim).permute(0, 3, 1, 2)

    def forward_literal(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Eq. 4 as the paper writes it, one line per line of the equation; equal to ``forward`` up to rounding.

            F_i' = Linear(C_i, C)(F_i)                 per stage
            F_i' = Upsample(H/4 x W/4)(F_i')
            F    = Linear(4C, C)(Concat(F_i'))         then BatchNorm and ReLU
            M    = Linear(C, N_cls)(F)

        The upsampled maps (4 x C channels at 1/4 resolution) and their concatenation are materialised, which the
        folded ``forward`` avoids. The fuse and classifier Linears are stored as 1x1 convolutions, which are per-pixel
        Linears; the dropout before the classifier is the same ``Dropout2d``.
        """
        size = features[0].shape[-2:]  # H/4 x W/4
        projected = [linear(f.movedim(1, -1)).movedim(-1, 1) for linear, f in zip(self.linear, features, strict=True)]
        upsampled = [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in projected]
        fused = F.relu(self.norm(self.fuse(torch.cat(upsampled[::-1], dim=1))))  # deepest stage first
        fused = F.dropout2d(fused, self.dropout, self.training)
        return self.classifier(fused)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Eq. 4 in the folded evaluation order of the module docstring: the model's forward."""
        fused = self._fused(features)
        if self.training:
            fused = self.norm(fused)
        fused = F.relu(fused, inplace=True)
        batch, dim, height, width = fused.shape
        weight = self.classifier.weight.flatten(1).T.expand(batch, -1, -1)  # (B, dim, classes)
        if self.training and self.dropout > 0:
            keep = 1.0 - self.dropout
            weight = weight * fused.new_empty(batch, dim, 1).bernoulli_(keep).div_(keep)
        # In the tokens' layout, so that the backward pass hands F a gradient in its own (channels-last) layout.
        logits = torch.baddbmm(self.classifier.bias, grid_to_tokens(fused), weight)  # (B, H*W, classes)
        return logits.view(batch, height, width, self.classifier.out_channels).permute(0, 3, 1, 2).contiguous()
