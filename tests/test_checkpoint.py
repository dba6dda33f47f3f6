"""Checkpoints: safetensors + JSON round trips, clear errors for wrong files, atomic writes."""

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import segformer.checkpoint
from segformer import SegFormer, load_checkpoint, read_metadata, save_checkpoint
from segformer.checkpoint import working_short_side

METADATA = {"classes": ["background", "plant", "person/animal", "vehicle"], "palette": [[0, 0, 0]] * 4}


@pytest.fixture(scope="module")
def model() -> SegFormer:
    """A B0 with non-trivial BatchNorm statistics (one train-mode forward), in eval mode."""
    torch.manual_seed(0)
    model = SegFormer.from_preset("b0", 4)
    with torch.no_grad():
        model.train()(torch.randn(2, 3, 64, 64))
    return model.eval()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(1))


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_round_trip_float32(tmp_path: Path, model: SegFormer, x: torch.Tensor) -> None:
    save_checkpoint(tmp_path / "run" / "best", model, METADATA)
    assert files(tmp_path / "run") == ["best.json", "best.safetensors"]  # no temporary file left behind
    loaded, meta = load_checkpoint(tmp_path / "run" / "best.safetensors")
    assert not loaded.training
    assert meta["classes"] == METADATA["classes"] and meta["num_classes"] == 4 and meta["dtype"] == "float32"
    assert read_metadata(tmp_path / "run" / "best") == meta
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_checkpoint_files_get_the_permissions_of_any_new_file(tmp_path: Path, model: SegFormer) -> None:
    """Not safetensors' private 0600: a checkpoint written for a Space or a colleague must be readable."""
    (tmp_path / "plain.txt").write_text("")
    usual = (tmp_path / "plain.txt").stat().st_mode
    save_checkpoint(tmp_path / "best", model, METADATA)
    assert (tmp_path / "best.safetensors").stat().st_mode == usual
    assert (tmp_path / "best.json").stat().st_mode == usual


def test_round_trip_float16_export(tmp_path: Path, model: SegFormer, x: torch.Tensor) -> None:
    save_checkpoint(tmp_path / "half", model, METADATA, dtype=torch.float16)
    stored = load_file(tmp_path / "half.safetensors")
    assert stored["decoder.fuse.weight"].dtype == torch.float16
    assert stored["decoder.norm.num_batches_tracked"].dtype == torch.int64  # integers are not cast
    size_32 = sum(v.numel() * 4 for v in model.state_dict().values() if v.is_floating_point())
    assert (tmp_path / "half.safetensors").stat().st_size < 0.55 * size_32
    loaded, meta = load_checkpoint(tmp_path / "half")
    assert meta["dtype"] == "float16"
    assert next(loaded.parameters()).dtype == torch.float32  # loaded back as float32
    with torch.no_grad():
        reference, logits = model(x), loaded(x)
    scale = reference.abs().max().item()
    assert (logits - reference).abs().max().item() < 1e-2 * scale
    assert (logits.argmax(1) == reference.argmax(1)).float().mean() > 0.99


def write_valid(tmp_path: Path, model: SegFormer) -> Path:
    save_checkpoint(tmp_path / "ckpt", model, METADATA)
    return tmp_path / "ckpt"


def test_a_pickle_renamed_to_safetensors_is_rejected_naming_the_file(tmp_path: Path, model: SegFormer) -> None:
    stem = write_valid(tmp_path, model)
    with open(stem.with_suffix(".safetensors"), "wb") as f:
        pickle.dump({"state_dict": {k: v.numpy() for k, v in model.state_dict().items()}}, f)
    with pytest.raises(ValueError, match="ckpt.safetensors is not a readable safetensors file"):
        load_checkpoint(stem)


def test_a_truncated_file_is_rejected_naming_the_file(tmp_path: Path, model: SegFormer) -> None:
    stem = write_valid(tmp_path, model)
    weights = stem.with_suffix(".safetensors")
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ValueError, match="ckpt.safetensors is not a readable safetensors file"):
        load_checkpoint(stem)


def test_missing_weights_are_named(tmp_path: Path, model: SegFormer) -> None:
    stem = write_valid(tmp_path, model)
    stem.with_suffix(".safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="ckpt.safetensors not found"):
        load_checkpoint(stem)


@pytest.mark.parametrize("missing", ["config", "num_classes"])
def test_metadata_without_required_keys_is_rejected(tmp_path: Path, model: SegFormer, missing: str) -> None:
    stem = write_valid(tmp_path, model)
    meta_path = stem.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    del meta[missing]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=f"ckpt.json is not a SegFormer checkpoint's metadata: missing {missing}"):
        load_checkpoint(stem)


def test_metadata_that_is_not_json_is_rejected(tmp_path: Path, model: SegFormer) -> None:
    stem = write_valid(tmp_path, model)
    stem.with_suffix(".json").write_text("{'config': ")
    with pytest.raises(ValueError, match="ckpt.json is not valid JSON"):
        load_checkpoint(stem)


def test_an_invalid_config_is_rejected(tmp_path: Path, model: SegFormer) -> None:
    stem = write_valid(tmp_path, model)
    meta = json.loads(stem.with_suffix(".json").read_text())
    meta["config"]["layers"] = 3
    stem.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="ckpt.json has an invalid model config:.*layers"):
        load_checkpoint(stem)


def test_weights_of_another_preset_are_rejected_naming_the_keys(tmp_path: Path, model: SegFormer) -> None:
    """B0 weights under B1 metadata: every mis-shaped key is named, with both shapes and the file."""
    stem = write_valid(tmp_path, model)
    with torch.device("meta"):
        b1 = SegFormer.from_preset("b1", 4)
    meta = json.loads(stem.with_suffix(".json").read_text())
    meta["config"] = json.loads(json.dumps(b1.config.__dict__))
    stem.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ValueError) as err:
        load_checkpoint(stem)
    message = str(err.value)
    assert "ckpt.safetensors do not fit the model" in message
    assert "encoder.patch_merging.0.proj.weight: (32, 3, 7, 7) in" in message
    assert "(64, 3, 7, 7) in the model" in message
    assert "decoder.linear.3.weight: (256, 256) in" in message


def test_a_failed_write_keeps_the_old_checkpoint_and_leaves_no_temporary_file(
    tmp_path: Path, model: SegFormer, monkeypatch: pytest.MonkeyPatch
) -> None:
    stem = write_valid(tmp_path, model)
    before = {name: (tmp_path / name).read_bytes() for name in files(tmp_path)}

    def fail_midway(tensors: dict[str, torch.Tensor], filename: str) -> None:
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(segformer.checkpoint, "save_file", fail_midway)
    torch.manual_seed(5)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(stem, SegFormer.from_preset("b0", 4), {**METADATA, "note": "new"})
    assert {name: (tmp_path / name).read_bytes() for name in files(tmp_path)} == before
    loaded, meta = load_checkpoint(stem)
    assert "note" not in meta


@pytest.mark.parametrize("value", ["512", 0, -1, True, 512.0])
def test_a_working_short_side_that_is_not_a_positive_integer_is_rejected(
    tmp_path: Path, model: SegFormer, value: object
) -> None:
    save_checkpoint(tmp_path / "c", model, {"working_short_side": value})
    with pytest.raises(ValueError, match="working_short_side must be a positive integer"):
        load_checkpoint(tmp_path / "c")


def test_the_working_short_side_is_read_from_the_metadata(tmp_path: Path, model: SegFormer) -> None:
    save_checkpoint(tmp_path / "with", model, {"working_short_side": 512})
    save_checkpoint(tmp_path / "without", model, {})
    assert working_short_side(load_checkpoint(tmp_path / "with")[1]) == 512
    assert working_short_side(load_checkpoint(tmp_path / "without")[1]) is None
