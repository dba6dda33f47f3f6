"""Weights in the Hugging Face ``transformers`` layout, both ways.

Loading covers ``SegformerForSemanticSegmentation`` (encoder + decode head, e.g.
nvidia/segformer-b0-finetuned-ade-512-512) and the encoder-only ``SegformerForImageClassification`` (the ImageNet MiT
weights, e.g. nvidia/mit-b0), whose ImageNet classifier is dropped and whose decoder starts from fresh
initialisation. Writing (``train.export --transformers``) gives the ``SegformerForSemanticSegmentation`` layout of a
model with the paper's design. One table of names serves both directions.
"""

import json
import re
from collections.abc import Sequence
from dataclasses import fields

import torch

from segformer.checkpoint import load_state, load_tensors
from segformer.config import VARIANTS, MiTConfig
from segformer.hub import hub_file
from segformer.model import SegFormer

#: (transformers name, this model's name) of each group of tensors, the transformers name without its "segformer."
#: prefix; {stage} and {block} are indices, {projection} one of the attention's query, key and value.
_NAMES = [
    ("encoder.patch_embeddings.{stage}.proj.", "encoder.patch_merging.{stage}.proj."),
    ("encoder.patch_embeddings.{stage}.layer_norm.", "encoder.patch_merging.{stage}.norm."),
    ("encoder.block.{stage}.{block}.layer_norm_1.", "encoder.blocks.{stage}.{block}.norm1."),
    ("encoder.block.{stage}.{block}.layer_norm_2.", "encoder.blocks.{stage}.{block}.norm2."),
    (
        "encoder.block.{stage}.{block}.attention.self.{projection}.",
        "encoder.blocks.{stage}.{block}.attention.{projection}.",
    ),
    ("encoder.block.{stage}.{block}.attention.self.sr.", "encoder.blocks.{stage}.{block}.attention.reduction."),
    (
        "encoder.block.{stage}.{block}.attention.self.layer_norm.",
        "encoder.blocks.{stage}.{block}.attention.reduction_norm.",
    ),
    ("encoder.block.{stage}.{block}.attention.output.dense.", "encoder.blocks.{stage}.{block}.attention.out."),
    ("encoder.block.{stage}.{block}.mlp.dense1.", "encoder.blocks.{stage}.{block}.ffn.fc1."),
    ("encoder.block.{stage}.{block}.mlp.dwconv.dwconv.", "encoder.blocks.{stage}.{block}.ffn.dwconv."),
    ("encoder.block.{stage}.{block}.mlp.dense2.", "encoder.blocks.{stage}.{block}.ffn.fc2."),
    ("encoder.layer_norm.{stage}.", "encoder.norms.{stage}."),
    ("decode_head.linear_c.{stage}.proj.", "decoder.linear.{stage}."),
    ("decode_head.linear_fuse.", "decoder.fuse."),
    ("decode_head.batch_norm.", "decoder.norm."),
    ("decode_head.classifier.", "decoder.classifier."),
]
_FIELDS = {"stage": r"\d+", "block": r"\d+", "projection": "query|key|value"}
#: The prefix of the encoder's names in ``SegformerFor*`` weights.
_PREFIX = "segformer."
_ENCODER_ONLY_HEAD = re.compile(r"^classifier\.")


def _pattern(template: str) -> re.Pattern[str]:
    """A template of ``_NAMES`` as a regular expression matching the start of a name, one group per field."""
    parts = re.split(r"\{(\w+)\}", template)  # literal, field, literal, ..., literal
    return re.compile("^" + "".join(f"(?P<{p}>{_FIELDS[p]})" if i % 2 else re.escape(p) for i, p in enumerate(parts)))


_THEIRS = [(_pattern(theirs), ours) for theirs, ours in _NAMES]
_OURS = [(_pattern(ours), theirs) for theirs, ours in _NAMES]


def _rename(name: str, table: list[tuple[re.Pattern[str], str]]) -> str | None:
    """``name`` with its start renamed by the first entry of ``table`` that matches it, or None."""
    for pattern, template in table:
        match = pattern.match(name)
        if match:
            return template.format(**match.groupdict()) + name[match.end() :]
    return None


def convert_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a transformers SegFormer state dict to this model's names.

    An image-classification head (``classifier.*``) is dropped; any other unknown key is an error that names it.
    """
    converted, unknown = {}, []
    for key, value in state.items():
        name = key.removeprefix(_PREFIX)
        if _ENCODER_ONLY_HEAD.match(name):
            continue
        new = _rename(name, _THEIRS)
        if new is None:
            unknown.append(key)
        else:
            converted[new] = value
    if unknown:
        raise ValueError(f"unknown keys in the transformers weights: {', '.join(unknown)}")
    return converted


def to_transformers_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """This model's state dict under the names of transformers' ``SegformerForSemanticSegmentation`` as published
    (``segformer.encoder.block.i.j...``, ``decode_head.linear_c...``): the inverse of :func:`convert_state_dict`."""
    converted, unknown = {}, []
    for key, value in state.items():
        new = _rename(key, _OURS)
        if new is None:
            unknown.append(key)
        else:
            converted[new if new.startswith("decode_head.") else _PREFIX + new] = value
    if unknown:
        raise ValueError(f"keys without a transformers name: {', '.join(unknown)}")
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


#: The design variants (segformer.config.VARIANTS) that a transformers SegformerConfig can express; the others must
#: keep the paper's choice.
_EXPRESSIBLE_VARIANTS = {"sr_ratios", "mlp_ratio", "decoder_dim"}


def config_to_transformers(config: MiTConfig, classes: Sequence[str]) -> dict:
    """The fields of a transformers ``SegformerConfig`` for a model of ``config`` whose outputs are ``classes``
    (``id2label``, ``label2id``): the inverse of :func:`config_from_transformers`. ValueError for a design variant
    that transformers' SegFormer cannot build."""
    paper = {field.name: field.default for field in fields(MiTConfig)}
    changed = [
        f"{v.field}={getattr(config, v.field)!r}"
        for v in VARIANTS
        if v.field not in _EXPRESSIBLE_VARIANTS and getattr(config, v.field) != paper[v.field]
    ]
    if changed:
        raise ValueError(f"transformers' SegFormer has the paper's design only, not {', '.join(changed)}")
    ratio = int(config.mlp_ratio) if float(config.mlp_ratio).is_integer() else config.mlp_ratio
    return {
        "architectures": ["SegformerForSemanticSegmentation"],
        "num_encoder_blocks": len(config.depths),
        "hidden_sizes": list(config.widths),
        "depths": list(config.depths),
        "num_attention_heads": list(config.heads),
        "sr_ratios": list(config.sr_ratios),
        "patch_sizes": list(config.patch_sizes),
        "strides": list(config.strides),
        "mlp_ratios": [ratio] * len(config.depths),
        "decoder_hidden_size": config.decoder_dim,
        "drop_path_rate": config.drop_path,
        "classifier_dropout_prob": config.classifier_dropout,
        "id2label": dict(enumerate(classes)),
        "label2id": {name: index for index, name in enumerate(classes)},
    }


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
