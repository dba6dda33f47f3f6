"""Loading weights published in the Hugging Face ``transformers`` layout.

Covers ``SegformerForSemanticSegmentation`` (encoder + decode head, e.g. nvidia/segformer-b0-finetuned-ade-512-512)
and the encoder-only ``SegformerForImageClassification`` (the ImageNet MiT weights, e.g. nvidia/mit-b0), whose
ImageNet classifier is dropped and whose decoder starts from fresh initialisation.
"""

import json
import re

import torch

from segformer.checkpoint import load_state, load_tensors
from segformer.config import MiTConfig
from segformer.hub import hub_file
from segformer.model import SegFormer

# transformers name pattern -> this model's name; applied to the key without the "segformer." prefix.
_BLOCK, _OURS = r"^encoder\.block\.(\d+)\.(\d+)\.", r"encoder.blocks.\1.\2."
_RULES = [
    (r"^encoder\.patch_embeddings\.(\d+)\.proj\.", r"encoder.patch_merging.\1.proj."),
    (r"^encoder\.patch_embeddings\.(\d+)\.layer_norm\.", r"encoder.patch_merging.\1.norm."),
    (_BLOCK + r"layer_norm_1\.", _OURS + "norm1."),
    (_BLOCK + r"layer_norm_2\.", _OURS + "norm2."),
    (_BLOCK + r"attention\.self\.(query|key|value)\.", _OURS + r"attention.\3."),
    (_BLOCK + r"attention\.self\.sr\.", _OURS + "attention.reduction."),
    (_BLOCK + r"attention\.self\.layer_norm\.", _OURS + "attention.reduction_norm."),
    (_BLOCK + r"attention\.output\.dense\.", _OURS + "attention.out."),
    (_BLOCK + r"mlp\.dense1\.", _OURS + "ffn.fc1."),
    (_BLOCK + r"mlp\.dwconv\.dwconv\.", _OURS + "ffn.dwconv."),
    (_BLOCK + r"mlp\.dense2\.", _OURS + "ffn.fc2."),
    (r"^encoder\.layer_norm\.(\d+)\.", r"encoder.norms.\1."),
    (r"^decode_head\.linear_c\.(\d+)\.proj\.", r"decoder.linear.\1."),
    (r"^decode_head\.linear_fuse\.", "decoder.fuse."),
    (r"^decode_head\.batch_norm\.", "decoder.norm."),
    (r"^decode_head\.classifier\.", "decoder.classifier."),
]
_ENCODER_ONLY_HEAD = re.compile(r"^classifier\.")


def convert_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a transformers SegFormer state dict to this model's names.

    An image-classification head (``classifier.*``) is dropped; any other unknown key is an error that names it.
    """
    converted, unknown = {}, []
    for key, value in state.items():
        name = key.removeprefix("segformer.")
        if _ENCODER_ONLY_HEAD.match(name):
            continue
        for pattern, replacement in _RULES:
            new, count = re.subn(pattern, replacement, name)
            if count:
                converted[new] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"unknown keys in the transformers weights: {', '.join(unknown)}")
    return converted


def config_from_transformers(config: dict) -> MiTConfig:
    """MiTConfig from a transformers ``SegformerConfig`` (its config.json as a dict)."""
    ratios = set(config.get("mlp_ratios", [4]))
    if len(ratios) != 1:
        raise ValueError(f"per-stage mlp_ratios {config['mlp_ratios']} are not supported; all stages must agree")
    return MiTConfig(
        widths=tuple(config["hidden_sizes"]),
        depths=tuple(config["depths"]),
        heads=tuple(config["num_attention_heads"]),
        sr_ratios=tuple(config["sr_ratios"]),
        patch_sizes=tuple(config["patch_sizes"]),
        strides=tuple(config["strides"]),
        mlp_ratio=ratios.pop(),
        decoder_dim=config.get("decoder_hidden_size", 256),
        drop_path=config.get("drop_path_rate", 0.1),
        classifier_dropout=config.get("classifier_dropout_prob", 0.1),
    )


def load_transformers_weights(model: SegFormer, state: dict[str, torch.Tensor], source: str) -> None:
    """Load transformers-layout weights; encoder-only weights fill the encoder and leave the decoder as is."""
    converted = convert_state_dict(state)
    if not any(k.startswith("decoder.") for k in converted):
        load_state(model.encoder, {k.removeprefix("encoder."): v for k, v in converted.items()}, source)
    else:
        load_state(model, converted, source)


def load_from_hub(model: SegFormer, repo_id: str, revision: str | None = None) -> None:
    """Load the weights of the Hub repository ``repo_id`` (transformers layout, ``model.safetensors``) into
    ``model`` (load_transformers_weights: an encoder-only repository fills the encoder alone)."""
    weights = hub_file(repo_id, "model.safetensors", revision)
    load_transformers_weights(model, load_tensors(weights), f"{repo_id}/model.safetensors")


def from_pretrained(repo_id: str, *, num_classes: int | None = None, revision: str | None = None) -> SegFormer:
    """Build and load a model from a Hub repository in the transformers layout (``config.json`` +
    ``model.safetensors``), through segformer.hub (works offline with ``HF_HUB_OFFLINE=1`` when the files are
    cached). ``num_classes`` defaults to the repository's label count; for encoder-only repositories it must be
    given.
    """
    config = json.loads(hub_file(repo_id, "config.json", revision).read_text())
    encoder_only = "SegformerForImageClassification" in config.get("architectures", [])
    if num_classes is None:
        if encoder_only:
            raise ValueError(f"{repo_id} holds an encoder only: pass num_classes for the new decoder")
        num_classes = len(config["id2label"])
    model = SegFormer(config_from_transformers(config), num_classes)
    load_from_hub(model, repo_id, revision)
    return model.eval()
