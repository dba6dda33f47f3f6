"""MiT-B0..B5 presets (paper Section 3.1 and Appendix, Table 6) as data, not as classes."""

from dataclasses import dataclass


@dataclass(frozen=True)
class MiTConfig:
    """Widths, depths and attention settings of one Mix Transformer encoder plus its decoder size.

    Every tuple has one entry per stage (four stages at 1/4, 1/8, 1/16 and 1/32 of the input).
    """

    widths: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    heads: tuple[int, int, int, int] = (1, 2, 5, 8)
    sr_ratios: tuple[int, int, int, int] = (8, 4, 2, 1)
    patch_sizes: tuple[int, int, int, int] = (7, 3, 3, 3)
    strides: tuple[int, int, int, int] = (4, 2, 2, 2)
    mlp_ratio: int = 4
    decoder_dim: int = 256
    drop_path: float = 0.1
    classifier_dropout: float = 0.1  # channel dropout before the decoder's classifier


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
