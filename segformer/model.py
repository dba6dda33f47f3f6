"""SegFormer = MiT encoder + All-MLP decoder (paper Section 3, Fig. 2).

``config.decoder`` picks the decoder: the paper's All-MLP (Eq. 4) or, as its ablation, an FPN
(``segformer.fpn_decoder``).
"""

import math
from dataclasses import replace

import torch
from torch import nn

from segformer.all_mlp_decoder import AllMLPDecoder
from segformer.config import FFN_PADDINGS, MiTConfig, preset
from segformer.fpn_decoder import FPNDecoder
from segformer.mix_ffn import MixFFN
from segformer.mix_transformer import MixTransformer

DECODER_CLASSES = {"all_mlp": AllMLPDecoder, "fpn": FPNDecoder}


class SegFormer(nn.Module):
    """Semantic segmentation network: (B, 3, H, W) normalised images -> (B, classes, ceil(H/4), ceil(W/4)) logits.

    ``forward(x, return_attentions=True)`` returns ``(logits, attentions)`` where ``attentions[s][b]`` is the
    softmax attention of block b in stage s, shape (B, heads_s, N_s, M_s): N_s = h_s * w_s query tokens on
    the stage grid (h_1 = ceil(H / 4), then halved, rounded up) and M_s = floor(h_s / sr_s) * floor(w_s / sr_s)
    reduced keys (M_s = N_s for sr_s = 1); a ValueError for an encoder without attention (token_mixer="dwconv").
    """

    def __init__(self, config: MiTConfig, num_classes: int) -> None:
        super().__init__()
        self.config = config
        self.num_classes = num_classes
        self.encoder = MixTransformer(config)
        self.decoder = DECODER_CLASSES[config.decoder](
            config.widths, config.decoder_dim, num_classes, dropout=config.classifier_dropout
        )

    @classmethod
    def from_preset(cls, name: str, num_classes: int) -> "SegFormer":
        return cls(preset(name), num_classes)

    def forward(
        self, x: torch.Tensor, return_attentions: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[list[torch.Tensor]]]:
        if x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
            raise ValueError(
                f"expected a float tensor of shape (batch, 3, height, width), got {x.dtype} of shape {tuple(x.shape)}"
            )
        features, attentions = self.encoder(x, return_attentions)
        logits = self.decoder(features)
        return (logits, attentions) if return_attentions else logits


def swap_ffn_padding(model: SegFormer, padding: str) -> SegFormer:
    """Give every Mix-FFN depthwise convolution the padding ``padding`` (see FFN_PADDINGS), in place; returns the model.

    The weights stay as they are: this evaluates a model trained with one padding under another, which measures how
    much it leans on the position information that zero padding leaks (Eq. 3; Islam et al. 2020). ``model.config``
    records the new padding, so that a checkpoint saved afterwards describes the model as it now runs.
    """
    if padding not in FFN_PADDINGS:
        raise ValueError(f"unknown ffn_padding {padding!r}; expected one of {', '.join(map(repr, FFN_PADDINGS))}")
    for module in model.modules():
        if isinstance(module, MixFFN):
            module.dwconv.padding_mode = padding
    model.config = replace(model.config, ffn_padding=padding)
    return model


def reference_init(model: nn.Module) -> nn.Module:
    """Re-initialise ``model`` as the reference implementation does (NVlabs/SegFormer ``mix_transformer.py``
    ``_init_weights``, and mmseg's decode head), in place; returns it.

    Linear: truncated normal, std 0.02, bias 0. Conv2d: normal with std sqrt(2 / fan_out), fan_out = k*k*C_out /
    groups, bias 0. LayerNorm and BatchNorm: weight 1, bias 0. The classifier: normal, std 0.01, bias 0. PyTorch's
    defaults (Kaiming-uniform with a = sqrt(5)) are what a plain construction gives; this matters only from scratch.
    """
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
        elif isinstance(module, nn.Conv2d):
            fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
            nn.init.normal_(module.weight, std=math.sqrt(2.0 / fan_out))
        elif isinstance(module, nn.LayerNorm | nn.BatchNorm2d):
            nn.init.ones_(module.weight)
        else:
            continue
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    if isinstance(model, SegFormer):
        nn.init.normal_(model.decoder.classifier.weight, std=0.01)
    return model
