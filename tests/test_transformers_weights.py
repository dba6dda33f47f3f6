"""Equivalence with Hugging Face transformers' SegFormer, an independent implementation of the same network.

Weights always travel through ``save_pretrained``: it writes the published Hub layout
(``segformer.encoder.block.i.j...``, ``decode_head.linear_c...``) that our loader reads, which is also the honest
test of that format (transformers keeps another layout in memory).
"""

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import SegformerConfig, SegformerForImageClassification, SegformerForSemanticSegmentation

from segformer import PRESETS, SegFormer, from_pretrained
from segformer.checkpoint import load_tensors
from segformer.transformers_weights import config_from_transformers, load_transformers_weights

TOL = 1e-4


def hf_config(name: str, num_labels: int, **changes: object) -> SegformerConfig:
    """transformers' config of one of our presets, eager attention so that attentions can be returned."""
    preset = PRESETS[name]
    config = SegformerConfig(
        hidden_sizes=list(preset.widths),
        depths=list(preset.depths),
        num_attention_heads=list(preset.heads),
        sr_ratios=list(preset.sr_ratios),
        decoder_hidden_size=preset.decoder_dim,
        num_labels=num_labels,
        layer_norm_eps=1e-5,
        **changes,
    )
    config._attn_implementation = "eager"
    return config


def randomise(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter and BatchNorm buffer random, scaled to keep activations O(1).

    The default init (zero biases, unit norm scales, zero running means) would hide swapped or dropped tensors.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            values = torch.randn(tensor.shape, generator=generator)
            if tensor.ndim > 1:
                values *= (tensor[0].numel()) ** -0.5
            elif name.endswith("running_var"):
                values = values.abs() * 0.5 + 0.5
            elif name.endswith("weight"):  # LayerNorm / BatchNorm scale
                values = 1.0 + 0.2 * values
            else:
                values *= 0.2
            tensor.copy_(values)
    return model


def transfer(theirs: torch.nn.Module, directory: Path) -> SegFormer:
    """Save ``theirs`` with save_pretrained and load it into a new SegFormer through our loader."""
    theirs.save_pretrained(directory)
    config = json.loads((directory / "config.json").read_text())
    ours = SegFormer(config_from_transformers(config), len(config["id2label"]))
    load_transformers_weights(ours, load_tensors(directory / "model.safetensors"), str(directory))
    return ours


def assert_close(ours: torch.Tensor, theirs: torch.Tensor, what: str, tol: float = TOL) -> None:
    assert ours.shape == theirs.shape, f"{what}: shape {tuple(ours.shape)} != {tuple(theirs.shape)}"
    error = (ours - theirs).abs().max().item()
    assert error <= tol, f"{what}: max abs difference {error:.2e} > {tol:g}"


@pytest.fixture(scope="module")
def b0_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[SegFormer, SegformerForSemanticSegmentation]:
    torch.manual_seed(0)
    theirs = randomise(SegformerForSemanticSegmentation(hf_config("b0", 150)), seed=1).eval()
    ours = transfer(theirs, tmp_path_factory.mktemp("b0")).eval()
    return ours, theirs


def check_eval_equivalence(ours: SegFormer, theirs: torch.nn.Module, size: tuple[int, int], seed: int) -> None:
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        logits, attentions = ours(x, return_attentions=True)
        reference = theirs(pixel_values=x, output_attentions=True)
        plain = ours(x)
    assert reference.logits.abs().max() > 1.0  # a test on large values, not on numbers near zero
    assert_close(logits, reference.logits, f"logits at {size}")
    assert_close(plain, reference.logits, f"logits at {size} (fused attention path)")
    ours_flat = [a for stage in attentions for a in stage]
    assert len(ours_flat) == len(reference.attentions) == sum(ours.config.depths)
    for i, (a, b) in enumerate(zip(ours_flat, reference.attentions, strict=True)):
        assert_close(a, b, f"attention of block {i} at {size}")


@pytest.mark.parametrize("size", [(512, 512), (250, 333)])
def test_b0_logits_and_every_attention_match_transformers(b0_pair, size: tuple[int, int]) -> None:
    check_eval_equivalence(*b0_pair, size, seed=size[1])


def test_b2_logits_and_every_attention_match_transformers(tmp_path: Path) -> None:
    torch.manual_seed(0)
    theirs = randomise(SegformerForSemanticSegmentation(hf_config("b2", 19)), seed=2).eval()
    ours = transfer(theirs, tmp_path).eval()
    check_eval_equivalence(ours, theirs, (250, 333), seed=5)


def test_training_step_matches_transformers(tmp_path: Path) -> None:
    """Train mode (BatchNorm on batch statistics, drop path and dropout off): same logits and same gradients.

    This checks that the decoder's algebraic rewrite of Eq. 4 also trains like the paper's form.
    """
    torch.manual_seed(0)
    config = hf_config("b0", 5, drop_path_rate=0.0, classifier_dropout_prob=0.0)
    theirs = randomise(SegformerForSemanticSegmentation(config), seed=3).train()
    ours = transfer(theirs, tmp_path).train()
    # In float64, so that the comparison tests the algebra, not float32 rounding: through the whole network and
    # back, that differs between CPUs' kernels (up to 1e-3 relative at the first layer on some).
    theirs, ours = theirs.double(), ours.double()
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 96, 128, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 5, (2, 96, 128), generator=generator)

    def loss_of(logits: torch.Tensor) -> torch.Tensor:
        upsampled = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
        return F.cross_entropy(upsampled, labels)

    ours_logits = ours(x)
    theirs_logits = theirs(pixel_values=x).logits
    assert_close(ours_logits, theirs_logits, "train-mode logits")
    loss_of(ours_logits).backward()
    loss_of(theirs_logits).backward()
    theirs_params, ours_params = dict(theirs.named_parameters()), dict(ours.named_parameters())
    pairs = {  # ours -> transformers' in-memory name
        "encoder.patch_merging.0.proj.weight": "segformer.stages.0.patch_embeddings.proj.weight",
        "encoder.patch_merging.2.proj.weight": "segformer.stages.2.patch_embeddings.proj.weight",
        "encoder.blocks.0.0.attention.query.weight": "segformer.stages.0.blocks.0.attention.q_proj.weight",
        "encoder.blocks.0.1.attention.value.bias": "segformer.stages.0.blocks.1.attention.v_proj.bias",
        "encoder.blocks.2.0.attention.reduction.weight": (
            "segformer.stages.2.blocks.0.attention.sequence_reduction.sequence_reduction.weight"
        ),
        "encoder.blocks.1.1.ffn.dwconv.weight": "segformer.stages.1.blocks.1.mlp.dwconv.dwconv.weight",
        "encoder.blocks.3.1.attention.out.bias": "segformer.stages.3.blocks.1.attention.o_proj.bias",
        "encoder.norms.1.weight": "segformer.stages.1.layer_norm.weight",
        "decoder.linear.0.weight": "decode_head.linear_projections.0.proj.weight",
        "decoder.linear.3.weight": "decode_head.linear_projections.3.proj.weight",
        "decoder.fuse.weight": "decode_head.linear_fuse.weight",
        "decoder.norm.weight": "decode_head.batch_norm.weight",
        "decoder.norm.bias": "decode_head.batch_norm.bias",
        "decoder.classifier.weight": "decode_head.classifier.weight",
        "decoder.classifier.bias": "decode_head.classifier.bias",
    }
    for ours_name, theirs_name in pairs.items():
        grad, reference = ours_params[ours_name].grad, theirs_params[theirs_name].grad
        scale = reference.abs().max().item()
        assert scale > 0, theirs_name
        error = (grad - reference).abs().max().item() / scale
        assert error <= TOL, f"gradient of {ours_name}: relative difference {error:.2e}"
    # Train-mode BatchNorm updated the same running statistics.
    assert_close(ours.decoder.norm.running_mean, theirs.decode_head.batch_norm.running_mean, "running mean")
    assert_close(ours.decoder.norm.running_var, theirs.decode_head.batch_norm.running_var, "running var")


def test_save_pretrained_writes_the_published_layout(tmp_path: Path) -> None:
    """The tests above would prove little if save_pretrained wrote transformers' in-memory names."""
    SegformerForSemanticSegmentation(tiny_config(3)).save_pretrained(tmp_path)
    keys = set(load_file(tmp_path / "model.safetensors"))
    assert "segformer.encoder.block.0.0.attention.self.query.weight" in keys
    assert "segformer.encoder.patch_embeddings.0.proj.weight" in keys
    assert "decode_head.linear_c.0.proj.weight" in keys
    assert not any(".stages." in k for k in keys)


# ---- from_pretrained through a real (offline) Hugging Face cache ------------------------------------------------


def tiny_config(num_labels: int, **changes: object) -> SegformerConfig:
    sizes = dict(hidden_sizes=[8, 16, 24, 32], depths=[1, 2, 1, 1], num_attention_heads=[1, 2, 2, 4])
    config = SegformerConfig(**{**sizes, "decoder_hidden_size": 16, "num_labels": num_labels, **changes})
    config._attn_implementation = "eager"
    return config


def cache_repo(cache: Path, repo_id: str, model: torch.nn.Module) -> Path:
    """Put ``model`` into ``cache`` as huggingface_hub lays out a downloaded repository; returns the snapshot."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / revision
    model.save_pretrained(snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    return snapshot


def test_from_pretrained_semantic_segmentation_offline(offline_cache: Path) -> None:
    torch.manual_seed(0)
    theirs = randomise(SegformerForSemanticSegmentation(tiny_config(3)), seed=6).eval()
    cache_repo(offline_cache, "segformer-test/tiny-seg", theirs)
    ours = from_pretrained("segformer-test/tiny-seg")
    assert not ours.training and ours.num_classes == 3
    x = torch.randn(1, 3, 70, 90)
    with torch.no_grad():
        assert_close(ours(x), theirs(pixel_values=x).logits, "logits")


def test_from_pretrained_encoder_only_offline(offline_cache: Path) -> None:
    """ImageNet MiT weights (SegformerForImageClassification): the encoder loads, its classifier is dropped and
    the decoder keeps a fresh initialisation; num_classes must be given."""
    torch.manual_seed(0)
    theirs = randomise(SegformerForImageClassification(tiny_config(10)), seed=7).eval()
    cache_repo(offline_cache, "segformer-test/tiny-mit", theirs)
    with pytest.raises(ValueError, match="encoder only: pass num_classes"):
        from_pretrained("segformer-test/tiny-mit")
    torch.manual_seed(1)
    fresh_decoder = SegFormer(config_from_transformers(theirs.config.to_dict()), 4).decoder.state_dict()
    torch.manual_seed(1)
    ours = from_pretrained("segformer-test/tiny-mit", num_classes=4)
    assert ours.num_classes == 4
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features, _ = ours.encoder(x)
        reference = theirs(pixel_values=x, output_hidden_states=True).hidden_states
    assert len(reference) == 4
    for i, (a, b) in enumerate(zip(features, reference, strict=True)):
        assert_close(a, b, f"stage {i + 1} features")
    for name, value in ours.decoder.state_dict().items():
        assert torch.equal(value, fresh_decoder[name]), f"decoder {name} is not freshly initialised"


def test_from_pretrained_offline_without_the_files_fails(offline_cache: Path) -> None:
    with pytest.raises(Exception, match="segformer-test/not-cached|offline|cache"):
        from_pretrained("segformer-test/not-cached")


def test_unknown_keys_are_named(tmp_path: Path) -> None:
    snapshot = tmp_path / "m"
    SegformerForSemanticSegmentation(tiny_config(3)).save_pretrained(snapshot)
    state = load_file(snapshot / "model.safetensors")
    state["segformer.encoder.block.0.0.attention.self.rotary.weight"] = torch.zeros(2)
    state["decode_head.extra.bias"] = torch.zeros(2)
    model = SegFormer(config_from_transformers(json.loads((snapshot / "config.json").read_text())), 3)
    with pytest.raises(ValueError, match="unknown keys") as err:
        load_transformers_weights(model, state, "test weights")
    assert "attention.self.rotary.weight" in str(err.value) and "decode_head.extra.bias" in str(err.value)


def test_mismatched_shapes_and_missing_keys_are_named(offline_cache: Path) -> None:
    """A repository whose weights are not those of its config.json: the error names the file and every bad key."""
    snapshot = cache_repo(offline_cache, "segformer-test/mixed", SegformerForSemanticSegmentation(tiny_config(3)))
    other = snapshot.parent / "other"
    SegformerForSemanticSegmentation(tiny_config(5, decoder_hidden_size=24)).save_pretrained(other)
    state = load_file(other / "model.safetensors")
    del state["segformer.encoder.layer_norm.3.bias"]
    (snapshot / "model.safetensors").unlink()
    save_file(state, snapshot / "model.safetensors")
    shutil.rmtree(other)
    with pytest.raises(ValueError) as err:
        from_pretrained("segformer-test/mixed")
    message = str(err.value)
    assert "segformer-test/mixed/model.safetensors" in message
    assert "missing keys: encoder.norms.3.bias" in message
    assert "decoder.fuse.weight: (24, 96, 1, 1) in" in message and "(16, 64, 1, 1) in the model" in message
    assert "decoder.classifier.weight: (5, 24, 1, 1)" in message
