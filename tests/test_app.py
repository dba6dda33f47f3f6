"""The app, started for real (`python app.py` in a subprocess, tests/servers.py) and called through gradio_client.

One server on the default checkpoint serves most tests; a second one loads the same checkpoint as
``hf://ORG/REPO/NAME`` from an offline Hugging Face cache folder. Both start in parallel, once per module.
Checkpoints that cannot be used are tried with app.main in this process, and one in a subprocess (its log).
"""

import ast
import io
import json
import re
import shutil
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from bombs import png_claiming
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from gradio_client.utils import sanitize_parameter_names
from hub_cache import cache_checkpoint
from PIL import Image
from servers import AppServer

import app
import segformer
from bench.bench_app import http_segment
from demo.attention import MARK_COLOUR, attention_maps, heatmap, working_image
from demo.checkpoints import load_model
from demo.ground_truth import HATCH_COLOURS, WRONG_COLOUR, disagreement, image_scores
from demo.photo import MAX_OTHER_PIXELS
from demo.uploads import MISSING
from segformer.checkpoint import working_short_side as scale
from segformer.images import IGNORE_COLOUR, MIN_SIDE, blend
from segformer.predict import working_size
from task import corruptions
from task.classes import CLASS_NAMES, PALETTE, PERSON_ANIMAL, label_id

MEAN_OF_HEADS = app.MEAN_OF_HEADS

ROOT = Path(__file__).parents[1]
CHECKPOINT = ROOT / "checkpoints" / "segformer-b0-4class"
PHOTO = ROOT / "examples" / "photos" / "ade20k__ADE_val_00000001.jpg"
VALIDATION = ROOT / "examples" / "validation" / "images" / "val"
LABELS = ROOT / "examples" / "validation" / "labels" / "val"
NOT_A_CAT = label_id(frozenset(range(4)) - {PERSON_ANIMAL})  # feral-cats' label 0
HF_REPO, HF_NAME = "segformer-test/b0-4class", "segformer-b0-4class"
ABSENT = "hf://segformer-test/absent/model"
NUM_CLASSES = 4


@pytest.fixture(scope="module")
def absent_hub_run(tmp_path_factory: pytest.TempPathFactory) -> AppServer:
    """app.py on an hf:// checkpoint that the (offline, empty) Hub cache lacks; started early to overlap."""
    tmp = tmp_path_factory.mktemp("absent-hub")
    hub = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp / "hub"), "HF_HOME": str(tmp / "home")}
    return AppServer(["--checkpoint", ABSENT], tmp / "absent.log", hub)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, absent_hub_run: AppServer) -> Iterator[dict[str, AppServer]]:
    tmp = tmp_path_factory.mktemp("servers")
    hub = {
        "HF_HUB_CACHE": str(cache_checkpoint(tmp / "hub", HF_REPO, HF_NAME)),
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp / "hf-home"),
    }
    started = {
        # The default checkpoint; the port from gradio's environment variable.
        "main": AppServer([], tmp / "main.log", port_from_env=True),
        # The same checkpoint from the Hub, offline from a local cache; the port from --port.
        "hf": AppServer(["--checkpoint", f"hf://{HF_REPO}/{HF_NAME}"], tmp / "hf.log", hub),
    }
    yield started
    for server in started.values():
        server.stop()


@pytest.fixture(scope="module")
def client(servers: dict[str, AppServer]) -> Client:
    return Client(servers["main"].wait(), verbose=False)


@pytest.fixture(scope="module")
def model() -> tuple[torch.nn.Module, dict]:
    return segformer.load_checkpoint(CHECKPOINT)


def mask_of(result: tuple) -> np.ndarray:
    """The full-size class-id mask from a /segment result (a palette PNG: pixel values are class ids)."""
    with Image.open(result[3]) as mask:
        assert mask.mode == "P"
        return np.asarray(mask)


def block_means(rgb: np.ndarray, block: int = 16) -> np.ndarray:
    """Mean of each whole ``block`` x ``block`` tile of an (H, W, 3) image."""
    height, width = rgb.shape[0] // block * block, rgb.shape[1] // block * block
    tiles = rgb[:height, :width].astype(np.float64).reshape(height // block, block, width // block, block, 3)
    return tiles.mean(axis=(1, 3))


def segment(client: Client, path: Path) -> tuple:
    return client.predict(handle_file(str(path)), 0.5, api_name="/segment")


# ---------------------------------------------------------------------------- a real photo


def test_photo_mask_is_full_size_and_equals_predict(client: Client, model: tuple) -> None:
    result = segment(client, PHOTO)
    mask = mask_of(result)
    with Image.open(PHOTO) as photo:
        rgb = np.array(photo.convert("RGB"))
    assert mask.shape == rgb.shape[:2]
    assert mask.max() < NUM_CLASSES
    net, meta = model
    image = torch.from_numpy(rgb).permute(2, 0, 1)
    expected = segformer.predict(
        net, image, mean=meta["mean"], std=meta["std"], max_side=1024, short_side=scale(meta)
    ).numpy()
    np.testing.assert_array_equal(mask, expected)
    overlay, shares, info, _ = result
    with Image.open(overlay) as picture:
        assert picture.format == "JPEG"
        shown = np.asarray(picture.convert("RGB"), dtype=np.float64)
    # The page shows the photo blended half-way toward the class colours (JPEG-compressed, hence the tolerance).
    blended = blend(rgb, expected, np.asarray(meta["palette"], dtype=np.uint8), 0.5)
    assert np.abs(shown - blended).mean() < 4.0
    assert np.abs(shown - rgb).mean() > 4 * np.abs(shown - blended).mean()
    total = sum(c["confidence"] for c in shares["confidences"])
    assert total == pytest.approx(1.0, abs=1e-6)
    assert "Inference" in info and "683×512" in info


def test_plain_http_route_gives_the_clients_overlay_and_mask(servers: dict[str, AppServer], client: Client) -> None:
    """/segment over plain HTTP (gradio's documented routes, as bench.bench_app times it, and as curl or a browser
    call it) returns the same mask and overlay as the Python client."""
    result = segment(client, PHOTO)
    with httpx.Client(base_url=servers["main"].wait() + "gradio_api/", timeout=60) as http:
        overlay, mask = http_segment(http, PHOTO, 0.5)
    with Image.open(io.BytesIO(mask)) as png:
        np.testing.assert_array_equal(np.asarray(png), mask_of(result))
    assert overlay == Path(result[0]).read_bytes()


def test_corrupted_photo_is_segmented_at_the_working_size_beside_its_mask(client: Client, model: tuple) -> None:
    """With a corruption the network sees the photo at the working size, corrupted there (task.corruptions, seed 0):
    the mask is predict's on those pixels, and the overlay shows the corrupted photo left of its segmentation."""
    net, meta = model
    with Image.open(PHOTO) as photo:
        rgb = np.array(photo.convert("RGB"))
    clean = mask_of(segment(client, PHOTO))
    work = corruptions.working_image(rgb, scale(meta), 1024)
    for name, level in (("gaussian_noise", 5), ("fog", 3)):
        result = client.predict(handle_file(str(PHOTO)), 0.0, name, level, api_name="/segment_corrupted")
        corrupted = corruptions.corrupt(work, name, level, seed=0)
        expected = segformer.predict(
            net, torch.from_numpy(corrupted).permute(2, 0, 1), mean=meta["mean"], std=meta["std"]
        ).numpy()
        mask = mask_of(result)
        np.testing.assert_array_equal(mask, expected)
        assert mask.shape == work.shape[:2] != clean.shape
        with Image.open(result[0]) as picture:  # opacity 0: the corrupted photo twice, 8 white columns apart
            shown = np.asarray(picture.convert("RGB"), dtype=np.float64)
        height, width = work.shape[:2]
        assert shown.shape == (height, 2 * width + 8, 3)
        # Compared in 16x16 block means: the overlay is a JPEG, which keeps a block's mean but not its noise.
        for side in (shown[:, :width], shown[:, -width:]):
            assert np.abs(block_means(side) - block_means(corrupted)).mean() < 3.0
        assert np.abs(block_means(shown[:, :width]) - block_means(work)).mean() > 3.0  # not the clean photo
        assert f"severity {level}" in result[2]


def test_blend_by_hand() -> None:
    """Each pixel moves ``opacity`` of the way to its class colour; ids beyond the palette stay as they were."""
    rgb = np.array([[[200, 100, 0], [10, 20, 30], [255, 255, 255]]], dtype=np.uint8)
    mask = np.array([[0, 1, 255]], dtype=np.uint8)
    palette = np.array([[0, 0, 0], [250, 120, 130]], dtype=np.uint8)
    assert blend(rgb, mask, palette, 0.5).tolist() == [[[100, 50, 0], [130, 70, 80], [255, 255, 255]]]
    assert blend(rgb, mask, palette, 0.0).tolist() == rgb.tolist()
    assert blend(rgb, mask, palette, 1.0).tolist() == [[[0, 0, 0], [250, 120, 130], [255, 255, 255]]]
    assert blend(rgb, mask, palette, 0.25)[0, 1].tolist() == [70, 45, 55]  # 10 + 0.25 * (250 - 10), ...


def test_validation_example(client: Client) -> None:
    name = sorted(VALIDATION.glob("msrc-v2__*.jpg"))[0].stem
    image, truth, prediction, wrong, table, summary = client.predict(name, api_name="/validation_example")
    sizes = {Image.open(path).size for path in (image, truth, prediction, wrong)}
    assert sizes == {Image.open(VALIDATION / f"{name}.jpg").size}
    assert [row[0] for row in table["data"]] == ["background", "plant", "person/animal", "vehicle"]
    assert "pixel accuracy" in summary
    with pytest.raises(AppError):
        client.predict("no-such-example", api_name="/validation_example")


def test_validation_example_with_partial_labels(client: Client, model: tuple) -> None:
    """feral-cats labels cats only: its "not a cat" pixels are drawn hatched in light grey, left out of IoU and pixel
    accuracy, and counted as wrong only where predicted person/animal (outside background, plant, vehicle)."""
    name = sorted(VALIDATION.glob("feral-cats__*.jpg"))[0].stem
    _, truth_picture, _, _, table, summary = client.predict(name, api_name="/validation_example")
    with Image.open(VALIDATION / f"{name}.jpg") as image, Image.open(LABELS / f"{name}.png") as label:
        rgb, truth = np.array(image.convert("RGB")), np.array(label)
    assert set(np.unique(truth).tolist()) == {PERSON_ANIMAL, NOT_A_CAT}
    net, meta = model
    prediction = segformer.predict(
        net, rgb, mean=meta["mean"], std=meta["std"], max_side=1024, short_side=scale(meta)
    ).numpy()
    cat, not_cat, predicted_cat = truth == PERSON_ANIMAL, truth == NOT_A_CAT, prediction == PERSON_ANIMAL
    # IoU over the cat pixels alone: no single-class pixel is anything but a cat, so no false positive counts.
    cat_iou = np.count_nonzero(cat & predicted_cat) / np.count_nonzero(cat)
    rows = {row[0]: row[1:] for row in table["data"]}
    assert rows["person/animal"][0] == f"{cat_iou:.3f}"
    assert f"pixel accuracy **{cat_iou:.1%}**" in summary  # the same count: cat pixels predicted cat
    outside = np.count_nonzero(not_cat & predicted_cat) / np.count_nonzero(not_cat)
    assert 'background|plant|vehicle ("not a cat")' in summary and f"{outside:.1%} of them" in summary
    assert rows["person/animal"][1] == f"{np.count_nonzero(cat) / cat.size:.1%}"  # truth share of all labelled
    with Image.open(truth_picture) as picture:
        shown = np.asarray(picture.convert("RGB"), dtype=np.float64)
    # Stripes of two light greys, half each (means: the picture comes as lossy WebP).
    hatch = shown[not_cat]
    assert np.abs(hatch.mean(axis=0) - np.mean(HATCH_COLOURS)).max() < 5
    assert np.abs(hatch - hatch.mean(axis=1, keepdims=True)).mean() < 2 and hatch.std() > 15
    assert np.abs(shown[cat].mean(axis=0) - PALETTE[PERSON_ANIMAL]).max() < 20


def test_partial_labels_by_hand() -> None:
    """A partial pixel is right anywhere in its set and wrong outside it; only single-class pixels enter IoU."""
    truth = np.array([[0, 2, NOT_A_CAT, NOT_A_CAT, 255]], dtype=np.uint8)
    prediction = np.array([[0, 1, 1, 2, 2]])
    result = image_scores(prediction, truth, CLASS_NAMES)
    assert result["per_class_iou"] == {"background": 1.0, "plant": 0.0, "person/animal": 0.0, "vehicle": None}
    assert result["pixel_acc"] == 0.5 and result["outside_admissible"] == 0.5
    assert result["partial_share"] == 0.4 and result["ignored_share"] == 0.2
    assert result["truth_share"] == [0.25, 0.0, 0.25, 0.0]  # of the 4 labelled pixels; partial ones in no class
    assert result["predicted_share"] == [0.25, 0.5, 0.25, 0.0]
    picture = disagreement(np.zeros((1, 5, 3), np.uint8), prediction, truth)
    assert [tuple(p) for p in picture[0]] == [(0, 0, 0), WRONG_COLOUR, (0, 0, 0), WRONG_COLOUR, IGNORE_COLOUR]


def test_attention(client: Client, model: tuple) -> None:
    marked, maps, info = client.predict(handle_file(str(PHOTO)), None, None, MEAN_OF_HEADS, api_name="/attention")
    assert len(maps) == 4 and "centre" in info
    assert [m["caption"].split(",")[0] for m in maps] == [f"Stage {s}" for s in range(1, 5)]
    assert "12×16 keys (R = 8)" in maps[0]["caption"]  # 683x512 -> 512x384 working size
    assert "| 1 | last (2 of 2) | 96×128 | 12×16 | 8 | 1 | 0×0 |" in info
    marked, maps, info = client.predict(handle_file(str(PHOTO)), 600, 100, "each head", api_name="/attention")
    assert len(maps) == sum(model[0].config.heads) and "(600, 100)" in info
    # The query point is marked on the photo (shown at the working size, 512x384: the point at 600*0.75, 100*0.75).
    with Image.open(marked) as picture:
        assert picture.size == (512, 384)
        assert np.abs(np.asarray(picture.convert("RGB"), float)[75, 450] - MARK_COLOUR).max() < 40


def test_attention_band_no_key_covers() -> None:
    """Where R does not divide the query grid, its leftover rows and columns show the photo in grey, not as
    weights (the black band of a zero weight once said nothing)."""
    loaded = load_model(str(CHECKPOINT))
    image = np.full((300, 500, 3), 200, dtype=np.uint8)
    stage = attention_maps(loaded, image, (10.0, 10.0))[0]
    assert stage.leftover == (75 - 9 * 8, 125 - 15 * 8) and stage.reach == (288, 480)
    picture = heatmap(image, stage, None, (10.0, 10.0))
    band = picture[290:, :400].reshape(-1, 3)
    assert np.all(band == band[0]) and np.all(band[0] == round(200 * 0.6 + 40))


def test_attention_maps_grids() -> None:
    """Grid sizes on an odd working size; weights spread over pixels, zero where no key reaches."""
    loaded = load_model(str(CHECKPOINT))
    image = np.random.default_rng(0).integers(0, 256, (300, 500, 3), dtype=np.uint8)
    stages = attention_maps(loaded, image, (499.0, 0.0))
    assert [(s.grid, s.keys) for s in stages] == [
        ((75, 125), (9, 15)),
        ((38, 63), (9, 15)),
        ((19, 32), (9, 16)),
        ((10, 16), (10, 16)),
    ]
    assert [s.query for s in stages] == [(0, 124), (0, 62), (0, 31), (0, 15)]
    config = loaded.model.config
    assert [s.maps.shape[0] for s in stages] == list(config.heads)
    assert [s.block for s in stages] == list(config.depths)  # the last block of each stage
    assert all(s.maps.shape[1:] == (300, 500) for s in stages)
    first = stages[0].maps
    assert first[:, 9 * 32 :].max() == 0 and first[:, :, 15 * 32 :].max() == 0 and first.min() >= 0


def test_attention_working_size_keeps_the_short_side() -> None:
    """At most 512 on the long side, unless the short side would drop below what the network accepts."""
    assert working_image(np.zeros((768, 1024, 3), np.uint8), 512).shape == (384, 512, 3)
    assert working_image(np.zeros((MIN_SIDE, 1024, 3), np.uint8), 512).shape == (MIN_SIDE, 1024, 3)
    assert working_image(np.zeros((100, 1600, 3), np.uint8), 512).shape == (32, 512, 3)


def test_attention_of_a_read_only_photo_warns_of_nothing() -> None:
    """A photo as Pillow decodes it is a read-only array; its attention maps are computed without a warning."""
    loaded = load_model(str(CHECKPOINT))
    with Image.open(PHOTO) as photo:
        rgb = np.asarray(photo.convert("RGB").resize((300, 225)))
    assert not rgb.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stages = attention_maps(loaded, working_image(rgb, app.ATTENTION_SIDE), (150.0, 100.0))
    assert len(stages) == 4


def test_attention_call_logs_no_warning(servers: dict[str, AppServer], client: Client, tmp_path: Path) -> None:
    """The server's log gains no warning from an /attention call on a photo small enough to be used as decoded."""
    path = tmp_path / "small.jpg"
    photo((300, 225)).save(path)
    log = servers["main"].log
    before = log.read_text()
    _, maps, info = client.predict(handle_file(str(path)), None, None, MEAN_OF_HEADS, api_name="/attention")
    assert len(maps) == 4 and "centre" in info
    added = log.read_text()[len(before) :]
    assert "Warning" not in added, added


# ---------------------------------------------------------------------------- the API as a client sees it

ENDPOINTS = ("/segment", "/validation_example", "/attention")


def api_names(client: Client) -> dict[str, tuple[list[str], list[str]]]:
    """{endpoint: (its parameters' names, its outputs' names)} as gradio_client's view_api() prints them."""
    info = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    return {
        endpoint: (
            [sanitize_parameter_names(p.get("parameter_name") or p["label"]) for p in info[endpoint]["parameters"]],
            [sanitize_parameter_names(r["label"]) for r in info[endpoint]["returns"]],
        )
        for endpoint in ENDPOINTS
    }


def test_every_input_and_output_of_the_api_has_a_short_meaningful_name(client: Client) -> None:
    """No name that gradio made up for a component without a label (value_14), none over 30 characters; the
    labels of the inputs as well, which view_api() shows beside their names."""
    info = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    labels = [p["label"] for endpoint in ENDPOINTS for p in info[endpoint]["parameters"]]
    names = [name for inputs, outputs in api_names(client).values() for name in (*inputs, *outputs)]
    for name in names + labels:
        assert not re.fullmatch(r"(value|parameter)_\d+", name) and 0 < len(name) <= 30, name
    assert api_names(client)["/segment"] == (
        ["image", "opacity"],
        ["segmentation", "share_of_each_class", "details", "mask_png_of_class_ids"],
    )


def about_example(url: str) -> str:
    """The Python code of the About tab's API example for a page served at ``url``."""
    example = app.api_example(url, sorted(path.stem for path in VALIDATION.glob("*.jpg"))[0])
    return re.fullmatch(r"```python\n(.*)```", example, re.DOTALL)[1]


def test_the_about_example_uses_the_api_names_and_runs(
    servers: dict[str, AppServer], client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The About tab's example, run as a visitor would (a photo.jpg beside it) against the live server: each call
    names its arguments and its outputs as view_api() does, and each returns what the names say."""
    code = about_example(servers["main"].url)
    names = api_names(client)
    calls = 0
    for node in ast.walk(ast.parse(code)):
        call = node.value if isinstance(node, ast.Assign) else None
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "predict":
            keywords = {k.arg: k.value for k in call.keywords}
            endpoint = ast.literal_eval(keywords.pop("api_name"))
            assert [t.id for t in node.targets[0].elts] == names[endpoint][1], endpoint
            assert list(keywords) == names[endpoint][0], endpoint
            calls += 1
    assert calls == len(ENDPOINTS)
    shutil.copyfile(PHOTO, tmp_path / "photo.jpg")
    monkeypatch.chdir(tmp_path)
    run: dict = {}
    exec(code, run)  # the example's code, run as a visitor would run it
    assert Image.open(run["mask_png_of_class_ids"]).size == Image.open(PHOTO).size
    assert {c["label"] for c in run["share_of_each_class"]["confidences"]} == set(CLASS_NAMES)
    assert "pixel accuracy" in run["summary"] and len(run["attention_maps"]) == 4
    assert "centre" in run["details"] and Image.open(run["query_point"]).size == (512, 384)


@pytest.mark.parametrize("endpoint", ["/segment", "/attention"])
def test_a_call_without_an_image_is_told_what_was_missing(client: Client, endpoint: str) -> None:
    for arguments in ({}, {"image": None}):
        with pytest.raises(AppError) as missing:
            client.predict(**arguments, api_name=endpoint)
        assert str(missing.value) == MISSING and "\n" not in MISSING and "handle_file" in MISSING


def test_a_plain_path_is_refused_by_gradio_before_the_app_sees_it(
    servers: dict[str, AppServer], client: Client
) -> None:
    """What the About example's comment says: a path string instead of handle_file(...) fails gradio's own check of
    the payload, so the app cannot answer it (its log has no refusal of its own) and the caller gets gradio's
    generic error, which names no path."""
    log = servers["main"].log
    before = log.read_text()
    with pytest.raises(AppError) as refused:
        client.predict(str(PHOTO), 0.5, api_name="/segment")
    assert "upstream Gradio app has raised an exception" in str(refused.value) and str(PHOTO) not in str(refused.value)
    assert "refused:" not in log.read_text()[len(before) :]
    assert "Photo **683×512**" in segment(client, PHOTO)[2]  # and the server still serves


# ---------------------------------------------------------------------------- bad input


def photo(size: tuple[int, int] = (96, 64)) -> Image.Image:
    with Image.open(PHOTO) as im:
        return im.convert("RGB").resize(size)


def write_exif_rotated(path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    photo((96, 64)).save(path, exif=exif)


def write_truncated(path: Path) -> None:
    data = PHOTO.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def write_16_bit(path: Path) -> None:
    ramp = np.linspace(0, 65535, 96 * 64).reshape(64, 96).astype(np.uint16)
    Image.fromarray(ramp).save(path)


def write_palette_transparent(path: Path) -> None:
    photo().convert("P").save(path, transparency=0)


def write_animated(path: Path) -> None:
    first = photo()
    first.save(path, save_all=True, append_images=[first.transpose(Image.Transpose.ROTATE_180)], duration=100)


def write_large_png(path: Path) -> None:
    """4096 x 4096 (16.8 megapixels, just under the PNG cap): decoded whole, then reduced to 2048 x 2048."""
    photo((512, 512)).resize((4096, 4096), Image.Resampling.NEAREST).save(path, compress_level=1)


def write_large_rotated(path: Path) -> None:
    """8000 x 4000 JPEG to be shown rotated: decoded at half its sides by the DCT, then turned upright."""
    exif = Image.Exif()
    exif[0x0112] = 6
    photo((800, 400)).resize((8000, 4000), Image.Resampling.NEAREST).save(path, quality=80, exif=exif)


BAD_INPUTS: dict[str, tuple[str, Callable[[Path], None], str | tuple[int, int]]] = {
    # name: (file name, writer, expected error text or mask (height, width))
    "truncated JPEG": ("cut.jpg", write_truncated, "damaged or truncated"),
    "not an image": ("notes.jpg", lambda p: p.write_text("not an image\n"), "not an image format"),
    "empty file": ("empty.png", lambda p: p.write_bytes(b""), "not an image format"),
    "1x1": ("dot.png", lambda p: Image.new("RGB", (1, 1), "red").save(p), f"at least {MIN_SIDE} pixels"),
    "too elongated": ("strip.png", lambda p: Image.new("RGB", (4000, 40)).save(p), "too elongated"),
    "bomb beyond Pillow's limit": ("bomb.png", lambda p: p.write_bytes(png_claiming(40000, 40000)), "megapixels"),
    "bomb beyond the app's limit": ("big.png", lambda p: p.write_bytes(png_claiming(11000, 11000)), "megapixels"),
    "PNG over the cap": (
        "wide.png",
        lambda p: p.write_bytes(png_claiming(5000, 3361)),
        f"5000x3361 \\(16.8 megapixels\\): more than the {MAX_OTHER_PIXELS / 1e6:g} megapixels accepted",
    ),
    "a format not opened": ("photo.tga", lambda p: photo().save(p, format="TGA"), "not an image format"),
    "grayscale": ("grey.png", lambda p: photo().convert("L").save(p), (64, 96)),
    "RGBA": ("alpha.png", lambda p: photo().convert("RGBA").save(p), (64, 96)),
    "palette with transparency": ("palette.png", write_palette_transparent, (64, 96)),
    "16-bit grayscale": ("deep.png", write_16_bit, (64, 96)),
    "CMYK JPEG": ("cmyk.jpg", lambda p: photo().convert("CMYK").save(p), (64, 96)),
    "EXIF-rotated": ("rotated.jpg", write_exif_rotated, (96, 64)),
    "animated GIF": ("moving.gif", write_animated, (64, 96)),
    "large PNG": ("large.png", write_large_png, (2048, 2048)),
    "large EXIF-rotated JPEG": ("large.jpg", write_large_rotated, (4000, 2000)),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input(client: Client, tmp_path: Path, case: str) -> None:
    name, write, expected = BAD_INPUTS[case]
    path = tmp_path / name
    write(path)
    if isinstance(expected, str):
        with pytest.raises(AppError, match=expected):
            segment(client, path)
    else:
        result = segment(client, path)
        mask = mask_of(result)
        assert mask.shape == expected and mask.max() < NUM_CLASSES
        assert ("only the first was segmented" in result[2]) == (case == "animated GIF")


def test_huge_photo(client: Client, model: tuple, tmp_path: Path) -> None:
    """12000 x 9000 (108 megapixels): decoded at 1/4 of each side by the DCT (the power of two that brings it under
    16 megapixels), the network runs at the checkpoint's working size of that (1024 x 768 at most), and the mask
    comes back at 3000 x 2250, as the text says."""
    path = tmp_path / "huge.jpg"
    photo((1200, 900)).resize((12000, 9000), Image.Resampling.NEAREST).save(path, quality=80)
    result = segment(client, path)
    work_h, work_w = working_size(2250, 3000, 1024, short_side=scale(model[1]))
    assert "Photo **12000×9000**" in result[2] and f"network ran at {work_w}×{work_h}" in result[2]
    assert "decoded at 1/4 of each side and its mask comes back at 3000×2250" in result[2]
    mask = mask_of(result)
    assert mask.shape == (2250, 3000) and mask.max() < NUM_CLASSES


def test_parallel_clients(servers: dict[str, AppServer], client: Client) -> None:
    """24 clients at once: all are queued and answered (after the bad inputs: the server still serves)."""
    paths = sorted(VALIDATION.glob("*.jpg"))[:24]

    def call(path: Path) -> tuple[int, int]:
        own = Client(servers["main"].url, verbose=False)
        return mask_of(segment(own, path)).shape

    with ThreadPoolExecutor(len(paths)) as pool:
        shapes = list(pool.map(call, paths))
    assert shapes == [Image.open(p).size[::-1] for p in paths]


# ---------------------------------------------------------------------------- checkpoints


def test_hub_checkpoint(servers: dict[str, AppServer], model: tuple) -> None:
    """The shipped checkpoint served as hf://ORG/REPO/NAME (from the offline Hub cache) gives the photo the same mask,
    pixel for pixel, as segformer.predict with the shipped weights: random or other weights would not."""
    hub = Client(servers["hf"].wait(), verbose=False)
    mask = mask_of(segment(hub, PHOTO))
    with Image.open(PHOTO) as photo:
        image = torch.from_numpy(np.array(photo.convert("RGB"))).permute(2, 0, 1)
    net, meta = model
    expected = segformer.predict(net, image, mean=meta["mean"], std=meta["std"], max_side=1024, short_side=scale(meta))
    assert mask.shape == (512, 683)
    np.testing.assert_array_equal(mask, expected.numpy())


def test_absent_hub_checkpoint_stops_with_a_message(absent_hub_run: AppServer) -> None:
    status, log = absent_hub_run.exit_status(), absent_hub_run.log.read_text()
    assert status == 1, log
    assert ABSENT in log and "Traceback" not in log, log


def test_missing_checkpoint_stops_with_a_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGFORMER_CHECKPOINT", str(tmp_path / "nowhere"))
    with pytest.raises(SystemExit) as stop:
        app.main([])
    assert "cannot load checkpoint" in str(stop.value.code) and "nowhere" in str(stop.value.code)


def test_incompatible_checkpoint_stops_with_a_message(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    shutil.copyfile(CHECKPOINT.with_suffix(".safetensors"), wrong.with_suffix(".safetensors"))
    metadata = json.loads(CHECKPOINT.with_suffix(".json").read_text())
    wrong.with_suffix(".json").write_text(json.dumps({**metadata, "num_classes": 5}))
    with pytest.raises(SystemExit) as stop:
        app.main(["--checkpoint", str(wrong)])
    assert "wrong.safetensors" in str(stop.value.code)
    wrong.with_suffix(".json").write_text(json.dumps({**metadata, "classes": ["a", "b"]}))
    with pytest.raises(SystemExit) as stop:
        app.main(["--checkpoint", str(wrong)])
    assert "does not fit its metadata" in str(stop.value.code)
