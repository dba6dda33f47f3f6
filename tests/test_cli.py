"""``python -m segformer segment``: folders of real validation images in, masks equal to segformer.predict's out."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import segformer
from segformer.__main__ import main
from train.paths import DATASETS_DIR as DATASETS

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "checkpoints" / "segformer-b0-4class"
IMAGES = ["top-a.jpg", "top-b.jpg", "sub/deeper.jpg"]


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Three MSRC-v2 validation photos, one in a sub-folder, a truncated JPEG and a text file beside them."""
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    sources = sorted((DATASETS / "msrc-v2" / "images" / "val").glob("*.jpg"))[:4]
    for name, source in zip(IMAGES, sources, strict=False):
        shutil.copyfile(source, folder / name)
    data = sources[3].read_bytes()
    (folder / "sub" / "cut.jpg").write_bytes(data[: len(data) // 3])
    (folder / "notes.txt").write_text("not an image, and not taken for one\n")
    return folder


def test_segments_a_folder_like_predict_reports_a_corrupt_file_and_reruns_skip(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "masks"
    command = [sys.executable, "-m", "segformer", "segment", str(photos), "--out", str(out), "--overlay"]
    run = subprocess.run([*command, "--max-side", "256"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stderr
    assert "cut.jpg" in run.stderr and "damaged or truncated" in run.stderr
    # Not a terminal: one plain line per image (no progress bar), then the summary.
    lines = run.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:4]] == [f"[{i}/4] {n}" for i, n in enumerate(sorted_names(), 1)]
    assert lines[-1].startswith("4 images: 3 segmented, 0 skipped (outputs exist), 1 failed;")
    assert lines[-1].endswith("images/s segmented")
    model, meta = segformer.load_checkpoint(CHECKPOINT)
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.*"))
    assert written == sorted([n.replace(".jpg", suffix) for n in IMAGES for suffix in (".png", ".overlay.jpg")])
    for name in IMAGES:
        rgb = segformer.read_image(photos / name)
        expected = segformer.predict(model, rgb, mean=meta["mean"], std=meta["std"], max_side=256).numpy()
        with Image.open(out / name.replace(".jpg", ".png")) as mask:
            assert mask.mode == "L"
            np.testing.assert_array_equal(np.asarray(mask), expected)
        with Image.open(out / name.replace(".jpg", ".overlay.jpg")) as overlay:
            assert overlay.format == "JPEG" and overlay.size == (rgb.shape[1], rgb.shape[0])

    # A rerun keeps what exists (same files, untouched); --overwrite rewrites them (atomically: new files).
    before = {p: p.stat().st_ino for p in out.rglob("*.png")}
    assert main(["segment", str(photos), "--out", str(out), "--overlay", "--max-side", "256"]) == 1
    assert {p: p.stat().st_ino for p in out.rglob("*.png")} == before
    (photos / "sub" / "cut.jpg").unlink()
    assert main(["segment", str(photos), "--out", str(out), "--overwrite"]) == 0
    assert all(p.stat().st_ino != ino for p, ino in before.items())


def sorted_names() -> list[str]:
    """The images and the corrupt file in the order the folder is walked (sorted paths)."""
    return sorted([*IMAGES, "sub/cut.jpg"], key=lambda n: Path(n).parts)


def test_outputs_inside_the_input_folder_are_not_taken_for_images(photos: Path, capsys: pytest.CaptureFixture) -> None:
    (photos / "sub" / "cut.jpg").unlink()
    out = photos / "masks"
    assert main(["segment", str(photos / "sub"), str(photos / "top-a.jpg"), "--out", str(out)]) == 0
    assert main(["segment", str(photos), "--out", str(out)]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "deeper.png",
        "sub/deeper.png",
        "top-a.png",
        "top-b.png",
    ]
    assert "3 images:" in capsys.readouterr().out.splitlines()[-1]


def test_refuses_outputs_that_would_collide_or_replace_an_input(photos: Path, capsys: pytest.CaptureFixture) -> None:
    Image.open(photos / "top-a.jpg").save(photos / "top-a.png")
    assert main(["segment", str(photos), "--out", str(photos / "masks")]) == 2  # top-a.jpg and top-a.png
    assert "would be written as" in capsys.readouterr().err
    assert main(["segment", str(photos / "top-a.png"), "--out", str(photos)]) == 2  # its mask would replace it
    assert "would be written as" in capsys.readouterr().err
    assert main(["segment", str(photos), "--out", str(photos)]) == 2
    assert "is an input folder" in capsys.readouterr().err
    assert main(["segment", str(photos / "nowhere"), "--out", str(photos / "masks")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert not (photos / "masks").exists()
