"""MiT-B0..B5 presets (paper Section 3.1 and Appendix, Table 6) as data, not as classes.

Besides the sizes, a config names the variant of each design choice the paper makes; the defaults are the paper's,
and the other values exist to measure what each choice is worth (ablations, not recommendations).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Patch merging between stages (Section 3.1): "overlap" (the paper), "non_overlap", "max_pool".
PATCH_MERGINGS = ("overlap", "non_overlap", "max_pool")
#: Padding of the Mix-FFN's depthwise convolution (Eq. 3): "zeros" (the paper), "replicate", "reflect".
FFN_PADDINGS = ("zeros", "replicate", "reflect")
#: GELUs in the Mix-FFN (Eq. 3): 0 none, 1 after the depthwise convolution (the paper), 2 also after fc1.
FFN_ACTIVATIONS = (0, 1, 2)
#: What mixes the tokens of a block (Eq. 1): "attention" (the paper) or "dwconv" (a depthwise convolution).
TOKEN_MIXERS = ("attention", "dwconv")
#: The decoder (Section 3.2): "all_mlp" (Eq. 4, the paper) or "fpn" (Lin et al. 2017).
DECODERS = ("all_mlp", "fpn")


@dataclass(frozen=True)
class Variant:
    """One design choice of MiTConfig that a run may change (docs/DISCUSSION.md), declared once for every caller."""

    field: str  # the MiTConfig field
    part: str  # "encoder" or "decoder"
    help: str
    choices: tuple = ()  # the values allowed (empty: any value of ``type``)
    type: type = str
    count: int = 1  # values per field: sr_ratios has one per stage


#: The MiTConfig fields that are design variants; each defaults to the paper's choice.
VARIANTS = (
    Variant("patch_merging", "encoder", "overlap (the paper's), non_overlap or max_pool", PATCH_MERGINGS),
    Variant("sr_ratios", "encoder", "attention reduction ratio per stage (paper: 8 4 2 1)", type=int, count=4),
    Variant("ffn_activations", "encoder", "GELUs in Mix-FFN (the paper's 1)", FFN_ACTIVATIONS, int),
    Variant("ffn_padding", "encoder", "padding of Mix-FFN's depthwise conv (paper: zeros)", FFN_PADDINGS),
    Variant("mlp_ratio", "encoder", "Mix-FFN's hidden width over the block's (paper: 4)", type=float),
    Variant("token_mixer", "encoder", "attention (the paper's) or dwconv", TOKEN_MIXERS),
    Variant("decoder", "decoder", "all_mlp (the paper's) or fpn", DECODERS),
    Variant("decoder_dim", "decoder", "decoder width (the preset's by default)", type=int),
)
_CHOICES = {variant.field: variant.choices for variant in VARIANTS if variant.choices}


def given_variants(values: Mapping[str, Any]) -> dict[str, Any]:
    """The design variants set in ``values`` (parsed flags, a run's recipe): the VARIANTS fields that are not None,
    a field of several values as a tuple."""
    given = {v.field: values[v.field] for v in VARIANTS if values.get(v.field) is not None}
    return {name: tuple(value) if isinstance(value, list) else value for name, value in given.items()}


@dataclass(frozen=True)
class MiTConfig:
    """Widths, depths and attention settings of one Mix Transformer encoder plus its decoder size and variants.

    Every tuple has one entry per stage (four stages at 1/4, 1/8, 1/16 and 1/32 of the input).
    """

    widths: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    heads: tuple[int, int, int, int] = (1, 2, 5, 8)
    sr_ratios: tuple[int, int, int, int] = (8, 4, 2, 1)  # (1, 1, 1, 1) is full attention
    patch_sizes: tuple[int, int, int, int] = (7, 3, 3, 3)  # used by patch_merging="overlap" only
    strides: tuple[int, int, int, int] = (4, 2, 2, 2)
    mlp_ratio: float = 4  # Mix-FFN's hidden width over the block's (Eq. 3); width x ratio must be whole
    decoder_dim: int = 256  # the decoder's width C, whichever decoder
    drop_path: float = 0.1
    classifier_dropout: float = 0.1  # channel dropout before the decoder's classifier
    patch_merging: str = "overlap"
    ffn_activations: int = 1
    ffn_padding: str = "zeros"
    token_mixer: str = "attention"
    decoder: str = "all_mlp"

    def __post_init__(self) -> None:
        for name, choices in _CHOICES.items():
            value = getattr(self, name)
            if value not in choices:
                raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(map(repr, choices))}")
        if self.mlp_ratio <= 0 or any(width * self.mlp_ratio % 1 for width in self.widths):
            raise ValueError(f"mlp_ratio {self.mlp_ratio} must be positive and give whole hidden widths")


PRESETS: dict[str, MiTConfig] = {
    "b0": MiTConfig(widths=(32, 64, 160, 256), depths=(2, 2, 2, 2), decoder_dim=256),
    "b1": MiTConfig(widths=(64, 128, 320, 512), depths=(2, 2, 2, 2), decoder_dim=256),
    "b2": MiTConfig(widths=(64, 128, 320, 512), depths=(3, 4, 6, 3), decoder_dim=768),
    "b3": MiTConfig(widths=(64, 128, 320, 512), depths=(3, 4, 18, 3), decoder_dim=768),
    "b4": MiTConfig(widths=(64, 128, 320, 512), depths=(3, 8, 27, 3), decoder_dim=768),
    "b5": MiTConfig(widths=(64, 128, 320, 512), depths=(3, 6, 40, 3), decoder_dim=768),
}


def preset(name: str) -> MiTConfig:
    """Return the preset called ``name`` ("b0".."b5", "mit_b0" and "mit-b0" also accepted)."""
    key = name.lower().removeprefix("mit").lstrip("_-")
    if key not in PRESETS:
        raise ValueError(f"unknown SegFormer preset {name!r}; expected one of {', '.join(PRESETS)}")
    return PRESETS[key]
