"""The position probe of Q4 (experiments.position_probe): its coordinates, and a read-out that finds position where
the features hold it and none where they don't."""

import torch

from experiments.position_probe import fit_ridge, probe, r_squared, stage_tokens, token_coordinates
from segformer import SegFormer


def test_token_coordinates_are_the_centres_of_the_grid() -> None:
    coords = token_coordinates(2, 4)
    assert coords.shape == (8, 2)
    assert coords[0].tolist() == [0.125, 0.25]  # row 0, column 0
    assert coords[5].tolist() == [0.375, 0.75]  # row 1, column 1


def test_ridge_reads_position_from_features_that_hold_it_and_not_from_noise() -> None:
    generator = torch.Generator().manual_seed(0)
    coords = token_coordinates(16, 16).repeat(4, 1)
    noise = torch.randn(len(coords), 6, generator=generator, dtype=torch.float64)
    holding = torch.cat([coords @ torch.tensor([[2.0, -1.0], [0.5, 3.0]], dtype=torch.float64), noise], dim=1)
    mean, std, weights = fit_ridge(holding, coords)
    x = torch.cat([(holding - mean) / std, torch.ones(len(holding), 1, dtype=holding.dtype)], dim=1)
    assert r_squared(x @ weights, coords) > 0.99
    fit, test = noise[:512], torch.randn(512, 6, generator=generator, dtype=torch.float64)
    mean, std, weights = fit_ridge(fit, coords[:512])
    x = torch.cat([(test - mean) / std, torch.ones(512, 1, dtype=test.dtype)], dim=1)
    assert r_squared(x @ weights, coords[512:1024]) < 0.05


def test_a_zero_padded_encoder_tells_position_on_a_blank_image_and_stage_tokens_cover_the_grid() -> None:
    """On uniform grey crops content says nothing, so all a read-out can use is the border that the zero padding of
    patch merging and Mix-FFN marks: a fresh B0's tokens give position away, more at every stage as the border's
    mark spreads inwards (R^2 0.14, 0.34 and 0.74 at stages 1-3 for this seed)."""
    torch.manual_seed(0)
    model = SegFormer.from_preset("b0", 4)
    crops = [torch.full((3, 128, 128), value, dtype=torch.uint8) for value in (90, 120, 150, 180)]
    tokens = stage_tokens(model, crops[:1])
    assert [t[0].shape[0] for t in tokens] == [32 * 32, 16 * 16, 8 * 8, 4 * 4]
    r2 = probe(model, crops[:3], crops[3:])
    assert 0.07 < r2[0] < r2[1] < r2[2]
