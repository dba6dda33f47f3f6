"""Tests of ``python -m train.prepare`` on small subsets of the real datasets."""

import contextlib
import json
import re
import shutil
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from task.classes import (
    BACKGROUND,
    CLASS_NAMES,
    IGNORE_INDEX,
    PARTIAL_IDS,
    PERSON_ANIMAL,
    PLANT,
    VEHICLE,
    label_id,
    task_classes_txt,
)
from train.data import SegmentationFolder
from train.paths import DATASETS_DIR as DATASETS
from train.prepare import main, prepare, resized_size

ADE_SAMPLES = DATASETS / "ade20k-samples"
ADE_STEMS = ("ADE_val_00000001", "ADE_val_00000002", "ADE_val_00000003")


def run(out: Path, *args: str) -> dict:
    """Run the command line into ``out`` and return its manifest."""
    main(["--out", str(out), *args])
    return json.loads((out / "manifest.json").read_text())


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def make_ade_zip(path: Path) -> Path:
    """Zip the ADE20K samples the way the official ADEChallengeData2016.zip is laid out."""
    with zipfile.ZipFile(path, "w") as zf:
        for file in sorted(ADE_SAMPLES.rglob("*")):
            if file.is_file() and file.name != "sceneCategories.txt":
                zf.write(file, file.relative_to(ADE_SAMPLES).as_posix())
    return path


def test_resized_size() -> None:
    assert resized_size(683, 512, 256) == (342, 256)
    assert resized_size(300, 400, 200) == (200, 267)
    assert resized_size(320, 213, 512) == (320, 213)  # never upsampled


def test_prepare_subset_of_every_source(tmp_path: Path) -> None:
    sources = [f"{name}={DATASETS / name}" for name in ("sift-flow", "msrc-v2", "camvid")]
    sources.append(f"ade20k={ADE_SAMPLES}")
    out = tmp_path / "prepared"
    manifest = run(out, "--short-side", "128", "--limit", "2", "--workers", "2", "--sources", *sources)

    expected = {name: {"train": 2, "val": 2} for name in ("sift-flow", "msrc-v2", "camvid")}
    expected["ade20k"] = {"train": 0, "val": 2}
    assert manifest["counts"] == expected
    assert manifest["short_side"] == 128 and manifest["skipped"] == [] and manifest["limit"] == 2
    assert manifest["sources"]["ade20k"] == str(ADE_SAMPLES)
    assert (out / "classes.txt").read_text() == task_classes_txt()
    freq = manifest["class_frequency"]["train"]
    assert list(freq) == list(CLASS_NAMES) and sum(freq.values()) == pytest.approx(1.0, abs=1e-5)
    for split in ("train", "val"):
        images, labels = files(out / "images" / split), files(out / "labels" / split)
        assert len(images) == sum(c[split] for c in expected.values())
        assert [Path(n).stem for n in images] == [Path(n).stem for n in labels]
        assert all(n.endswith(".jpg") and "__" in n for n in images)
        for name in labels:
            label = Image.open(out / "labels" / split / name)
            image = Image.open(out / "images" / split / name.replace(".png", ".jpg"))
            assert label.mode == "L" and label.size == image.size and min(image.size) == 128
            assert set(np.unique(np.asarray(label))) <= {0, 1, 2, 3, *PARTIAL_IDS, IGNORE_INDEX}
    pixels = manifest["class_pixels"]["camvid"]["val"]
    assert sum(pixels.values()) == 2 * 128 * 171  # 480x360 -> 171x128


def test_prepare_keeps_small_images_and_maps_labels(tmp_path: Path) -> None:
    out = tmp_path / "prepared"
    run(out, "--short-side", "512", "--limit", "1", "--workers", "1", "--sources", f"msrc-v2={DATASETS / 'msrc-v2'}")
    label = np.asarray(Image.open(out / "labels" / "train" / "msrc-v2__10_11_s.png"))
    raw = np.asarray(Image.open(DATASETS / "msrc-v2" / "labels" / "train" / "10_11_s.png"))
    assert label.shape == raw.shape == (213, 320)
    source_jpeg = (DATASETS / "msrc-v2" / "images" / "train" / "10_11_s.jpg").read_bytes()
    assert (out / "images" / "train" / "msrc-v2__10_11_s.jpg").read_bytes() == source_jpeg  # copied
    assert np.all(label[raw == 0] == IGNORE_INDEX)  # void
    assert np.all(label[raw == 2] == 1)  # grass -> plant


def test_prepare_feral_cats_keeps_not_a_cat_as_a_partial_label(tmp_path: Path) -> None:
    """feral-cats labels only cats: its 0 becomes the partial label {background, plant, vehicle}, counted apart."""
    out = tmp_path / "prepared"
    run(
        out,
        "--short-side",
        "256",
        "--limit",
        "2",
        "--workers",
        "1",
        "--sources",
        f"feral-cats={DATASETS / 'feral-cats'}",
    )
    not_a_cat = label_id(frozenset({BACKGROUND, PLANT, VEHICLE}))
    manifest = json.loads((out / "manifest.json").read_text())
    for name in files(out / "labels" / "val"):
        raw = np.asarray(Image.open(DATASETS / "feral-cats" / "labels" / "val" / name.removeprefix("feral-cats__")))
        label = np.asarray(Image.open(out / "labels" / "val" / name))
        assert label.shape == (256, 256) and set(np.unique(label)) <= {PERSON_ANIMAL, not_a_cat}
        # nearest-neighbour resizing keeps the cat's share of the picture
        assert abs((label == PERSON_ANIMAL).mean() - (raw == 1).mean()) < 0.01
    pixels = manifest["class_pixels"]["feral-cats"]["val"]
    assert pixels["background|plant|vehicle"] > 0 and pixels["person/animal"] > 0 and pixels["background"] == 0
    _, mask = SegmentationFolder(out, "val")[0]
    assert set(mask.unique().tolist()) <= {PERSON_ANIMAL, not_a_cat}  # read back as they were written


def test_jpeg_quality_reencodes_every_image_smaller_and_keeps_labels(tmp_path: Path) -> None:
    """--jpeg-quality re-encodes even images that would be copied (SIFT Flow is already 256x256)."""
    source = (
        "--short-side",
        "256",
        "--limit",
        "3",
        "--workers",
        "1",
        "--sources",
        f"sift-flow={DATASETS / 'sift-flow'}",
    )
    copied, small = run(tmp_path / "copied", *source), run(tmp_path / "small", *source, "--jpeg-quality", "60")
    assert (copied["jpeg_quality"], copied["reencoded_all"]) == (95, False)
    assert (small["jpeg_quality"], small["reencoded_all"]) == (60, True)
    for split in ("train", "val"):
        names = files(tmp_path / "copied" / "images" / split)
        assert names == files(tmp_path / "small" / "images" / split) and len(names) == 3
        for name in names:
            original = (DATASETS / "sift-flow" / "images" / split / name.removeprefix("sift-flow__")).read_bytes()
            a, b = (tmp_path / d / "images" / split / name for d in ("copied", "small"))
            assert a.read_bytes() == original and len(b.read_bytes()) < len(original)
            assert Image.open(b).size == Image.open(a).size
            lab = name.replace(".jpg", ".png")
            la, lb = (np.asarray(Image.open(tmp_path / d / "labels" / split / lab)) for d in ("copied", "small"))
            assert np.array_equal(la, lb)
    assert copied["class_pixels"] == small["class_pixels"]


def test_jpeg_quality_out_of_range_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "x"), "--jpeg-quality", "100", "--sources", f"msrc-v2={DATASETS / 'msrc-v2'}"])
    assert "JPEG quality from 1 to 95" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_ade20k_from_folder_and_from_zip_agree(tmp_path: Path) -> None:
    from_dir = run(tmp_path / "a", "--short-side", "256", "--workers", "1", "--sources", f"ade20k={ADE_SAMPLES}")
    archive = make_ade_zip(tmp_path / "ADEChallengeData2016.zip")
    from_zip = run(tmp_path / "b", "--short-side", "256", "--workers", "2", "--sources", f"ade20k={archive}")
    assert from_dir["counts"] == from_zip["counts"] == {"ade20k": {"train": 0, "val": 3}}
    assert files(tmp_path / "a" / "labels" / "val") == [f"ade20k__{s}.png" for s in ADE_STEMS]
    for name in files(tmp_path / "a" / "labels" / "val"):
        a, b = (np.asarray(Image.open(tmp_path / d / "labels" / "val" / name)) for d in "ab")
        assert np.array_equal(a, b)
    assert from_dir["class_pixels"] == from_zip["class_pixels"]


class _RangeHandler(BaseHTTPRequestHandler):
    """Serves ``payload`` for any path, honouring ``Range: bytes=N-`` when ``honour_range``.

    The first response stops after ``cut_after`` bytes when set, like a dropped connection.
    """

    payload = b""
    honour_range = True
    cut_after: int | None = None
    ranges: list[str] = []

    def do_GET(self) -> None:
        requested = self.headers.get("Range") if self.honour_range else None
        self.ranges.append(self.headers.get("Range") or "")
        start = int(requested.removeprefix("bytes=").removesuffix("-")) if requested else 0
        body = self.payload[start:]
        self.send_response(206 if requested else 200)
        self.send_header("Content-Length", str(len(body)))
        if requested:
            self.send_header("Content-Range", f"bytes {start}-{len(self.payload) - 1}/{len(self.payload)}")
        self.end_headers()
        cut, type(self).cut_after = self.cut_after, None
        self.wfile.write(body[:cut])


@contextlib.contextmanager
def _serve(tmp_path: Path, **settings: object) -> Iterator[tuple[str, bytes, list[str]]]:
    payload = make_ade_zip(tmp_path / "served.zip").read_bytes()
    handler = type("Handler", (_RangeHandler,), {"payload": payload, "ranges": [], **settings})
    handler.log_message = lambda *args: None  # keep the test output quiet
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/ADEChallengeData2016.zip", payload, handler.ranges
    finally:
        server.shutdown()
        server.server_close()


def _download(tmp_path: Path, url: str) -> dict:
    return run(tmp_path / "out", "--download", "--download-dir", str(tmp_path / "dl"), "--ade20k-url", url)


@pytest.mark.parametrize("honour_range", [True, False])
def test_download_resumes_a_partial_file(tmp_path: Path, honour_range: bool) -> None:
    with _serve(tmp_path, honour_range=honour_range) as (url, payload, ranges):
        (tmp_path / "dl").mkdir()
        (tmp_path / "dl" / "ADEChallengeData2016.zip.part").write_bytes(payload[:1000])
        manifest = _download(tmp_path, url)
        assert ranges == ["bytes=1000-"]
        assert (tmp_path / "dl" / "ADEChallengeData2016.zip").read_bytes() == payload  # restarted if needed
        assert not (tmp_path / "dl" / "ADEChallengeData2016.zip.part").exists()
        assert manifest["counts"] == {"ade20k": {"train": 0, "val": 3}}


def test_interrupted_download_says_rerun_then_resumes(tmp_path: Path) -> None:
    with _serve(tmp_path, cut_after=5000) as (url, payload, ranges):
        with pytest.raises(SystemExit, match="rerun to resume"):
            _download(tmp_path, url)
        assert (tmp_path / "dl" / "ADEChallengeData2016.zip.part").read_bytes() == payload[:5000]
        _download(tmp_path, url)
        assert ranges == ["", "bytes=5000-"]
        assert (tmp_path / "dl" / "ADEChallengeData2016.zip").read_bytes() == payload


def test_download_offline_is_a_one_line_message(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/ADEChallengeData2016.zip"
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path / "out"), "--download", "--download-dir", str(tmp_path), "--ade20k-url", url])
    message = str(exc.value.code)
    assert "cannot download" in message and url in message and "\n" not in message
    assert not (tmp_path / "out").exists()


def test_bad_files_are_reported_and_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "camvid"
    for kind in ("images", "labels"):
        (source / kind / "train").mkdir(parents=True)
    stems = sorted(p.stem for p in (DATASETS / "camvid" / "images" / "train").iterdir())[:5]
    for stem in stems:
        shutil.copy(DATASETS / "camvid" / "images" / "train" / f"{stem}.jpg", source / "images" / "train")
        shutil.copy(DATASETS / "camvid" / "labels" / "train" / f"{stem}.png", source / "labels" / "train")
    shutil.copy(DATASETS / "camvid" / "classes.txt", source)
    garbage, truncated, mismatched, unlabelled, good = stems
    (source / "images" / "train" / f"{garbage}.jpg").write_bytes(b"definitely not a jpeg" * 100)
    data = (source / "images" / "train" / f"{truncated}.jpg").read_bytes()
    (source / "images" / "train" / f"{truncated}.jpg").write_bytes(data[: len(data) // 2])
    label = source / "labels" / "train" / f"{mismatched}.png"
    Image.open(label).resize((240, 180), Image.Resampling.NEAREST).save(label)
    (source / "labels" / "train" / f"{unlabelled}.png").unlink()

    manifest = run(tmp_path / "out", "--workers", "1", "--sources", f"camvid={source}")
    assert manifest["counts"] == {"camvid": {"train": 1, "val": 0}}
    reasons = {Path(s["file"]).stem: s["reason"] for s in manifest["skipped"]}
    assert set(reasons) == {garbage, truncated, mismatched, unlabelled}
    assert reasons[garbage].startswith("unreadable image") and reasons[truncated].startswith("unreadable image")
    assert reasons[mismatched] == "label size 240x180 != image size 480x360"
    assert reasons[unlabelled] == "missing label"
    assert files(tmp_path / "out" / "images" / "train") == [f"camvid__{good}.jpg"]
    assert f"skipped {source / 'images' / 'train' / garbage}.jpg" in capsys.readouterr().err
    assert not list((tmp_path / "out").rglob("*.tmp"))


def test_missing_source_folder_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "camvid"
    with pytest.raises(SystemExit, match=re.escape(str(missing))):
        main(["--out", str(tmp_path / "out"), "--sources", f"camvid={missing}"])
    with pytest.raises(SystemExit, match=re.escape(str(missing))):
        main(["--out", str(tmp_path / "out"), "--sources", f"ade20k={missing}"])


def test_empty_source_folder_is_a_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "sift-flow"
    empty.mkdir()
    with pytest.raises(SystemExit, match="missing .*classes.txt"):
        main(["--out", str(tmp_path / "out"), "--sources", f"sift-flow={empty}"])
    shutil.copy(DATASETS / "sift-flow" / "classes.txt", empty)
    with pytest.raises(SystemExit, match="no images"):
        main(["--out", str(tmp_path / "out"), "--sources", f"sift-flow={empty}"])


def test_bad_zip_and_bad_arguments(tmp_path: Path) -> None:
    broken = tmp_path / "ADEChallengeData2016.zip"
    broken.write_bytes(b"PK not really")
    with pytest.raises(SystemExit, match="not a valid zip"):
        main(["--out", str(tmp_path / "out"), "--sources", f"ade20k={broken}"])
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path / "out"), "--sources", "pascal=/data"])
    assert exc.value.code == 2  # argparse usage error
    with pytest.raises(SystemExit, match="no sources"):
        main(["--out", str(tmp_path / "out")])


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    args = ["--limit", "1", "--workers", "1", "--sources", f"msrc-v2={DATASETS / 'msrc-v2'}"]
    run(tmp_path / "out", *args)
    with pytest.raises(SystemExit, match="--overwrite"):
        run(tmp_path / "out", *args)
    stale = tmp_path / "out" / "images" / "train" / "stale.jpg"
    stale.touch()
    assert run(tmp_path / "out", *args, "--overwrite")["counts"] == {"msrc-v2": {"train": 1, "val": 1}}
    assert not stale.exists()


def test_prepare_davis_ignores_what_is_not_annotated(tmp_path: Path) -> None:
    """DAVIS 2016 annotates one object per video: its 0 is "not annotated" (ignore), never background; the object
    maps by the source's class (a car to vehicle, the bicyclist of bmx-trees to {person/animal, vehicle})."""
    out = tmp_path / "prepared"
    prepare(out, 256, {"davis-2016": DATASETS / "davis-2016"}, workers=1)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["davis-2016"] == {"train": 230, "val": 39}
    rider = label_id(frozenset({PERSON_ANIMAL, VEHICLE}))
    for stem, task in (("bmx-trees_00000", rider), ("car-roundabout_00000", VEHICLE), ("blackswan_00000", 2)):
        split = "val" if stem.startswith("blackswan") else "train"
        raw = np.asarray(Image.open(DATASETS / "davis-2016" / "labels" / split / f"{stem}.png"))
        label = np.asarray(Image.open(out / "labels" / split / f"davis-2016__{stem}.png"))
        assert set(np.unique(label)) == {task, IGNORE_INDEX}
        assert abs((label == task).mean() - (raw > 0).mean()) < 0.01
    assert manifest["class_pixels"]["davis-2016"]["train"]["background"] == 0


def test_prepare_everyday_photos_have_images_and_no_labels(tmp_path: Path) -> None:
    out = tmp_path / "prepared"
    run(out, "--short-side", "256", "--limit", "3", "--workers", "1", "--sources",
        f"everyday-photos={DATASETS / 'everyday-photos'}")  # fmt: skip
    assert len(files(out / "images" / "train")) == 3 and len(files(out / "labels" / "train")) == 3
    for name in files(out / "labels" / "train"):
        label = np.asarray(Image.open(out / "labels" / "train" / name))
        image = Image.open(out / "images" / "train" / name.replace(".png", ".jpg"))
        assert label.shape == image.size[::-1] and min(image.size) <= 256 and np.all(label == IGNORE_INDEX)
