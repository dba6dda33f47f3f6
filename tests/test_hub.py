"""The two Hub spellings, through a real (offline) Hugging Face cache: ``hf://ORG/REPO/NAME`` is a checkpoint of this
project wherever a checkpoint is taken, ``transformers://ORG/REPO`` a repository in the transformers layout."""

from pathlib import Path

import pytest
import torch
from hub_cache import cache_checkpoint
from transformers import SegformerForImageClassification

from segformer import SegFormer, from_pretrained, load_checkpoint
from segformer.checkpoint import DEFAULT_CHECKPOINT, read_metadata
from segformer.transformers_weights import config_from_transformers
from tests.test_transformers_weights import cache_repo, randomise, tiny_config
from train.train import initialise

SHIPPED_ON_HUB = "hf://segformer-test/b0-4class/segformer-b0-4class"


def test_an_hf_checkpoint_loads_as_the_local_one_and_init_continues_its_history(offline_cache: Path) -> None:
    cache_checkpoint(offline_cache, "segformer-test/b0-4class", "segformer-b0-4class")
    hub, hub_meta = load_checkpoint(SHIPPED_ON_HUB)
    local, local_meta = load_checkpoint(DEFAULT_CHECKPOINT)
    assert hub_meta == local_meta == read_metadata(SHIPPED_ON_HUB)
    torch.testing.assert_close(hub.state_dict(), local.state_dict(), rtol=0, atol=0)
    start = SegFormer.from_preset("b0", 4)
    assert initialise(start, SHIPPED_ON_HUB) == local_meta["history"]
    torch.testing.assert_close(start.state_dict(), local.state_dict(), rtol=0, atol=0)


def test_init_from_a_transformers_repository_fills_the_encoder(offline_cache: Path) -> None:
    theirs = randomise(SegformerForImageClassification(tiny_config(10)), seed=7).eval()
    cache_repo(offline_cache, "segformer-test/tiny-mit", theirs)
    model = SegFormer(config_from_transformers(theirs.config.to_dict()), 4)
    assert initialise(model, "transformers://segformer-test/tiny-mit") == []
    expected = from_pretrained("segformer-test/tiny-mit", num_classes=4).encoder.state_dict()
    torch.testing.assert_close(model.encoder.state_dict(), expected, rtol=0, atol=0)


def test_hf_with_two_parts_names_the_transformers_spelling() -> None:
    with pytest.raises(ValueError, match=r"expected hf://ORG/REPO/NAME.*transformers://ORG/REPO"):
        initialise(SegFormer.from_preset("b0", 4), "hf://nvidia/mit-b0")
