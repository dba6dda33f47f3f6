"""The All-MLP decoder's folded evaluation order computes Eq. 4: it agrees with the equation evaluated line by line
(``forward_literal``) on the shipped weights and the features of bundled photos."""

import copy
from pathlib import Path

import pytest
import torch

from segformer import SegFormer, load_checkpoint, read_image
from segformer.all_mlp_decoder import AllMLPDecoder
from segformer.predict import normalise

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "checkpoints" / "segformer-b0-4class"
PHOTOS = ROOT / "examples" / "photos"


@pytest.fixture(scope="module")
def shipped() -> tuple[SegFormer, dict]:
    return load_checkpoint(CHECKPOINT)


def features(shipped: tuple[SegFormer, dict], photo: str) -> list[torch.Tensor]:
    """The shipped encoder's four feature maps F_1..F_4 of a bundled photo."""
    model, meta = shipped
    image = torch.from_numpy(read_image(PHOTOS / photo)).permute(2, 0, 1)[None]
    with torch.no_grad():
        return model.encoder(normalise(image, meta["mean"], meta["std"]))[0]


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return ((value - reference).abs().max() / reference.abs().max()).item()


# 320x213 gives odd grids (54x80 down to 7x10), so upsampling is not a plain doubling; 683x512 is the largest photo.
@pytest.mark.parametrize("photo", ["msrc-v2__5_14_s.jpg", "ade20k__ADE_val_00000001.jpg"])
def test_folded_forward_equals_eq4_evaluated_literally(shipped: tuple[SegFormer, dict], photo: str) -> None:
    """Eval mode (BatchNorm folded into the matrices): the same logits to float32 rounding, the same mask."""
    decoder = shipped[0].decoder
    assert isinstance(decoder, AllMLPDecoder) and not decoder.training
    maps = features(shipped, photo)
    with torch.no_grad():
        folded, literal = decoder(maps), decoder.forward_literal(maps)
    assert folded.shape == literal.shape == (1, 4, *maps[0].shape[-2:])
    assert relative_error(folded, literal) < 1e-5
    assert torch.equal(folded.argmax(1), literal.argmax(1))


def test_folded_forward_equals_eq4_in_training_with_its_gradients(shipped: tuple[SegFormer, dict]) -> None:
    """Train mode (BatchNorm on batch statistics, channel dropout with the same random draw): equal logits and equal
    gradients for the features and the decoder's weights.

    The per-stage biases only shift F by a constant per channel, which training-mode BatchNorm subtracts again: their
    gradient is 0 in exact arithmetic, and both orders give rounding noise only, far below every other gradient."""
    decoder = copy.deepcopy(shipped[0].decoder).train()  # training updates BatchNorm's running statistics
    assert decoder.dropout > 0
    maps = [f.requires_grad_() for f in features(shipped, "msrc-v2__5_14_s.jpg")]
    names, parameters = zip(*decoder.named_parameters(), strict=True)
    results = []
    for forward in (decoder.forward, decoder.forward_literal):
        torch.manual_seed(0)
        logits = forward(maps)
        results.append((logits.detach(), torch.autograd.grad((logits * logits.detach()).sum(), [*maps, *parameters])))
    (folded, folded_grads), (literal, literal_grads) = results
    assert relative_error(folded, literal) < 1e-5
    largest = max(grad.abs().max().item() for grad in literal_grads)
    for name, folded_grad, literal_grad in zip(["F"] * 4 + list(names), folded_grads, literal_grads, strict=True):
        if name.startswith("linear.") and name.endswith(".bias"):
            assert max(folded_grad.abs().max(), literal_grad.abs().max()) < 1e-6 * largest, name
        else:
            assert relative_error(folded_grad, literal_grad) < 1e-5, name
