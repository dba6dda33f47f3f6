"""The ONNX export (``python -m train.export --onnx``) run in onnxruntime: PyTorch's logits and masks on real images."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image

import segformer
from segformer.predict import normalise, upsampled_argmax
from train.export import ONNX_OPSET, main
from train.paths import DATASETS_DIR as DATASETS

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "checkpoints" / "segformer-b0-4class"
TOL = 1e-4


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "segformer-b0-4class.onnx"
    main(["--checkpoint", str(CHECKPOINT), "--onnx", str(path)])
    return path


@pytest.fixture(scope="module")
def session(exported: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(exported), options, providers=["CPUExecutionProvider"])


def val_batch(source: str, count: int) -> torch.Tensor:
    """The first ``count`` validation photos of a source, normalised as the shipped checkpoint wants."""
    meta = segformer.read_metadata(CHECKPOINT)
    images = []
    for path in sorted((DATASETS / source / "images" / "val").glob("*.jpg"))[:count]:
        with Image.open(path) as image:
            images.append(torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1))
    return normalise(torch.stack(images), meta["mean"], meta["std"])


def test_export_has_opset_17_and_dynamic_batch_height_and_width(exported: Path) -> None:
    model = onnx.load(str(exported))
    onnx.checker.check_model(model)
    assert ONNX_OPSET >= 17 and model.opset_import[0].version == ONNX_OPSET
    assert "LayerNormalization" in {node.op_type for node in model.graph.node}
    (pixels,), (logits,) = model.graph.input, model.graph.output
    dims = [[d.dim_param or d.dim_value for d in t.type.tensor_type.shape.dim] for t in (pixels, logits)]
    assert dims == [["batch", 3, "height", "width"], ["batch", 4, "logit_height", "logit_width"]]


@pytest.mark.parametrize(("source", "count"), [("msrc-v2", 2), ("camvid", 1)])
def test_onnxruntime_gives_pytorchs_logits_and_masks_on_real_images(
    session: ort.InferenceSession, source: str, count: int
) -> None:
    """MSRC-v2 (320x213, a batch of two) and CamVid (480x360): one file for both sizes, equal logits, equal masks."""
    model, _ = segformer.load_checkpoint(CHECKPOINT)
    x = val_batch(source, count)
    with torch.inference_mode():
        reference = model(x)
    (logits,) = session.run(["logits"], {"pixel_values": x.numpy()})
    assert logits.shape == tuple(reference.shape)
    error = np.abs(logits - reference.numpy()).max()
    assert error <= TOL, f"max abs logit difference {error:.2e} at {tuple(x.shape)}"
    size = tuple(x.shape[-2:])
    assert torch.equal(upsampled_argmax(torch.from_numpy(logits), size), upsampled_argmax(reference, size))
