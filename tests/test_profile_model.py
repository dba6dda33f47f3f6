"""bench.profile_model splits a forward into its parts on both sides: the exported nodes by their module path, and
this model by hooks; checked on a small input."""

import tempfile
from pathlib import Path

import pytest
import torch

from bench.profile_model import PARTS, onnx_profile, part_of, torch_parts
from segformer.model import SegFormer


def test_part_of_by_hand() -> None:
    assert part_of("/encoder/patch_merging.0/proj/Conv_output_0_nchwc") == "stage 1"
    assert part_of("/encoder/blocks.2.1/attention/query/MatMul") == "stage 3"
    assert part_of("/encoder/norms.3/LayerNormalization") == "stage 4"
    assert part_of("/decoder/Add_5") == "decoder"
    assert part_of("ReorderOutput_token_155") is None
    assert part_of("/encoder/something_else/Add") is None


@pytest.fixture(scope="module")
def b0() -> SegFormer:
    torch.manual_seed(0)
    return SegFormer.from_preset("b0", 4).eval()


def test_both_sides_split_their_forward_into_every_part(b0: SegFormer) -> None:
    """Each part takes time on both sides, onnxruntime's parts add up to its operators' total (every node counted
    once), and the hooks that time this model's parts are gone afterwards."""
    x = torch.randn(1, 3, 96, 128)
    with tempfile.TemporaryDirectory() as tmp:
        per_op, per_part, wall = onnx_profile(b0, x, 2, Path(tmp))
    assert list(per_part) == list(PARTS) and all(seconds > 0 for seconds in per_part.values())
    assert sum(per_part.values()) == pytest.approx(sum(per_op.values()), rel=1e-9)
    assert wall > 0
    ours = torch_parts(b0, x, 2)
    assert list(ours) == list(PARTS) and all(seconds > 0 for seconds in ours.values())
    assert not b0.encoder.patch_merging[0]._forward_pre_hooks and not b0.decoder._forward_hooks  # hooks removed
