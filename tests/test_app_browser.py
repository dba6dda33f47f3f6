"""The app in a real browser: headless Chromium (Playwright) against `python app.py` (tests/servers.py).

Screenshots go to tests/artifacts/ (gitignored). Chromium comes from Debian (`make browser`, run by `make test`);
the test is skipped only when /usr/bin/chromium is missing, and under CI=true it fails then instead.
"""

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np
import pytest
from conftest import IN_CI
from PIL import Image
from servers import AppServer

from train.paths import DATASETS_DIR

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parent / "artifacts"
EXAMPLES = Path(__file__).parents[1] / "examples"
DISCUSSION = Path(__file__).parents[1] / "docs" / "DISCUSSION.md"
PHOTO = EXAMPLES / "photos" / "ade20k__ADE_val_00000001.jpg"
OTHER_PHOTO = EXAMPLES / "photos" / "ade20k__ADE_val_00000002.jpg"
DAVIS = DATASETS_DIR / "davis-2016"
TIMEOUT_MS = 60_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and not IN_CI,
    reason=f"{CHROMIUM} is not installed (run `make browser` or apt-get install chromium)",
)


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real page, `python app.py` with the default checkpoint, on a free port."""
    server = AppServer([], tmp_path_factory.mktemp("browser") / "app.log")
    try:
        yield server.wait()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def new_page(browser, url: str, width: int, height: int):
    """A new visitor's page of ``url`` in a window of ``width`` x ``height``."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    return page


@pytest.fixture(scope="module")
def page(browser, url: str) -> Iterator:
    """One visitor's page that the tests below use in turn."""
    page = new_page(browser, url, 1400, 1000)
    yield page
    page.close()


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def in_viewport(page, selector: str) -> bool:
    """Whether the top of the element ``selector`` is inside the window (seen without scrolling)."""
    return page.evaluate(
        "s => { const r = document.querySelector(s).getBoundingClientRect(); "
        "return r.top >= 0 && r.top < window.innerHeight; }",
        selector,
    )


def lines_of(page, selector: str) -> list[int]:
    """How many lines the text of each element matching ``selector`` takes (a header wrapped mid-word: 2)."""
    return page.evaluate(
        "s => [...document.querySelectorAll(s)].map(e => { const range = document.createRange(); "
        "range.selectNodeContents(e); return new Set([...range.getClientRects()].map(r => Math.round(r.top))).size; })",
        selector,
    )


def photo_size(path: Path) -> str:
    """How the Segment tab's details begin for the photo at ``path``: 'Photo WxH'."""
    with Image.open(path) as photo:
        return "Photo {}×{}".format(*photo.size)


def loaded(page, selector: str) -> None:
    """Wait until the image ``selector`` has loaded."""
    page.wait_for_function(
        "s => { const img = document.querySelector(s); return img && img.complete && img.naturalWidth > 0; }",
        arg=selector,
    )


def test_first_view_shows_the_first_examples_segmentation(browser, url: str) -> None:
    """A new visitor at 1280x800 sees, before any click, the first example photo with its segmentation, class
    shares and details, computed once when the app started (no event of the page sends the server a photo), and
    the one-line hint above them without scrolling."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(TIMEOUT_MS)
    sent = []
    page.on("request", lambda r: sent.append(json.loads(r.post_data)["data"]) if "queue/join" in r.url else None)
    page.goto(url)
    loaded(page, "#segment-photo img")
    loaded(page, "#overlay img")
    shares = page.locator("#shares")
    for name in ("background", "plant", "person/animal", "vehicle"):
        shares.get_by_text(name, exact=True).wait_for(state="visible")
    assert "%" in shares.inner_text()
    first = sorted((EXAMPLES / "photos").glob("*.jpg"))[0]
    page.locator("#segment-info").get_by_text(photo_size(first)).wait_for(state="visible")
    hint = page.locator("#segment-hint")
    assert "first example" in hint.inner_text() and lines_of(page, "#segment-hint p") == [1]
    box = hint.bounding_box()
    assert 0 <= box["y"] and box["y"] + box["height"] <= 800, box
    page.wait_for_timeout(2000)  # an event the page ran on load would have been sent by now
    assert all(data == [] for data in sent), sent
    page.screenshot(path=ARTIFACTS / "0-first-view.png")
    page.close()


def test_title_takes_at_most_two_lines_on_a_phone(browser, url: str) -> None:
    page = new_page(browser, url, 390, 844)
    title = page.locator("#title h1")
    title.wait_for(state="visible")
    height, line = title.evaluate("h => [h.getBoundingClientRect().height, parseFloat(getComputedStyle(h).lineHeight)]")
    assert height <= 2 * line + 1, (height, line)
    loaded(page, "#segment-photo img")
    page.screenshot(path=ARTIFACTS / "0-first-view-390.png", full_page=True)
    page.close()


def test_query_boxes_are_empty_until_a_point_is_picked(browser, url: str) -> None:
    """The attention tab's x and y say "empty = centre", and they are empty, not 0, until a point is picked."""
    page = new_page(browser, url, 1280, 800)
    open_tab(page, "Attention maps")
    for box in (page.get_by_label("Query x"), page.get_by_label("Query y")):
        box.wait_for(state="visible")
        page.wait_for_function("input => input.value === ''", arg=box.element_handle())
        assert box.get_attribute("placeholder") == "empty = centre"
    page.close()


def test_bad_upload_shows_one_error_and_clears(page, tmp_path: Path) -> None:
    """A file that is not an image: one error toast (the segmentation runs once), no broken image left in the
    photo box, and no text of the previous photo under the error."""
    page.locator("#segment-photo input[type=file]").set_input_files(str(OTHER_PHOTO))
    page.locator("#segment-info").get_by_text(photo_size(OTHER_PHOTO)).wait_for(state="visible")
    notes = tmp_path / "notes.jpg"
    notes.write_text("not an image\n")
    page.locator("#segment-photo input[type=file]").set_input_files(str(notes))
    toast = page.locator(".toast-body")
    toast.first.wait_for(state="visible")
    page.wait_for_timeout(3000)  # a second run, if there were one, would have answered by now
    assert toast.count() == 1, [t.inner_text() for t in toast.all()]
    assert "not an image format" in toast.first.inner_text() and "(2)" not in toast.first.inner_text()
    page.wait_for_function("() => !document.querySelector('#segment-photo img')")
    assert page.locator("#segment-info").inner_text().strip() == ""
    page.screenshot(path=ARTIFACTS / "1-bad-upload.png", full_page=True)
    page.locator(".toast-body .toast-close, .toast-close").first.click()


def test_upload_shows_overlay(page) -> None:
    page.locator("#segment-photo input[type=file]").set_input_files(str(PHOTO))
    # The overlay (the photo blended with its class colours) and the legend naming every class.
    page.locator("#overlay img").first.wait_for(state="visible")
    for name in ("background", "plant", "person/animal", "vehicle"):
        assert page.locator("#overlay-legend").get_by_text(name).is_visible()
    assert page.get_by_text("Inference").first.is_visible()
    page.screenshot(path=ARTIFACTS / "1-segment.png", full_page=True)


def test_a_corruption_changes_the_mask(page) -> None:
    """Picking a corruption segments the photo again, and the overlay becomes the corrupted photo beside its mask;
    back to "None", the clean photo's segmentation returns."""
    page.locator("#segment-photo input[type=file]").set_input_files(str(PHOTO))
    info = page.locator("#segment-info")
    info.get_by_text("Inference").wait_for(state="visible")
    clean_src = page.locator("#overlay img").first.get_attribute("src")
    clean = overlay_pixels(page, clean_src)
    page.locator("#corruption-type input").click()
    page.get_by_role("option", name="Gaussian noise").click()
    info.get_by_text("Gaussian noise, severity 3").wait_for(state="visible")
    corrupted = overlay_pixels(page, page.locator("#overlay img").first.get_attribute("src"))
    height, width = clean.shape[:2]
    assert corrupted.shape[1] > 2 * corrupted.shape[0] * width / height  # two panels side by side
    right = corrupted[:, -(corrupted.shape[1] - 8) // 2 :]
    left = corrupted[:, : (corrupted.shape[1] - 8) // 2]
    assert np.abs(right - left).mean() > 10  # the mask's colours on the right only
    page.screenshot(path=ARTIFACTS / "1-corruption.png", full_page=True)
    page.locator("#corruption-type input").click()
    page.get_by_role("option", name="None", exact=True).click()
    page.wait_for_function("() => !document.querySelector('#segment-info').innerText.includes('severity')")
    assert overlay_pixels(page, page.locator("#overlay img").first.get_attribute("src")).shape == clean.shape


def test_validation_example_shows_three_panels(page) -> None:
    """Every thumbnail is shown whole; a click brings the result into view; the dropdown names the picked image
    as the gallery does."""
    open_tab(page, "Validation examples")
    gallery = page.locator("#validation-gallery")
    thumbnails = gallery.locator("button.thumbnail-item")
    thumbnails.last.wait_for(state="visible")
    last, box = thumbnails.last.bounding_box(), gallery.bounding_box()
    assert last["y"] + last["height"] <= box["y"] + box["height"] + 1, (last, box)  # the last row is not cut
    page.evaluate("window.scrollTo(0, 0)")
    thumbnails.nth(4).click()
    panels = page.locator("#validation-panels img")
    panels.nth(2).wait_for(state="visible")
    assert panels.count() == 3
    page.get_by_text("pixel accuracy").first.wait_for(state="visible")
    page.wait_for_function(
        "() => { const r = document.querySelector('#validation-panels').getBoundingClientRect();"
        " return r.top >= 0 && r.top < window.innerHeight; }"
    )
    names = sorted(path.stem for path in (EXAMPLES / "validation" / "images" / "val").glob("*.jpg"))
    label = names[4].replace("__", ": ", 1)
    assert page.locator("#choice input").input_value() == label
    assert gallery.get_by_text(label).count() == 1
    page.screenshot(path=ARTIFACTS / "2-validation.png", full_page=True)


def test_validation_example_with_partial_labels(page) -> None:
    """A feral-cats example (cats labelled, the rest "not a cat"): the legend says what the hatching means, the
    summary names the partial label."""
    names = sorted(path.stem for path in (EXAMPLES / "validation" / "images" / "val").glob("*.jpg"))
    index = next(i for i, name in enumerate(names) if name.startswith("feral-cats__"))
    page.locator("#validation-gallery button.thumbnail-item").nth(index).click()
    page.get_by_text('background|plant|vehicle ("not a cat")').first.wait_for(state="visible")
    assert page.get_by_text("partial label: one of a few classes").first.is_visible()
    page.locator("#validation-panels img").nth(2).wait_for(state="visible")
    page.screenshot(path=ARTIFACTS / "2-validation-partial.png", full_page=True)


def test_curves_tab(page) -> None:
    """The headline scores are those of the weights served (the bundled validation examples predicted with
    them, pooled), not those of the first checkpoint of an average; the tab says whose curves it shows."""
    open_tab(page, "Training curves")
    page.locator("#curves").first.wait_for(state="visible")
    import app
    from demo.checkpoints import load_model
    from demo.ground_truth import pooled_scores, read_pairs
    from demo.segment import segment

    loaded = load_model(str(app.DEFAULT_CHECKPOINT))
    pairs = read_pairs(EXAMPLES / "validation")
    pooled = pooled_scores([(segment(loaded, rgb)[0], truth) for rgb, truth in pairs.values()], loaded.classes)
    served = page.locator("#served-scores")
    served.wait_for(state="visible")
    text = served.inner_text()
    assert f"The weights served here, on the {len(pairs)} validation images" in text
    assert f"mIoU {pooled['miou']:.3f}" in text and f"pixel accuracy {pooled['pixel_acc']:.1%}" in text
    soup = loaded.metadata.get("soup")
    if soup:  # the shipped checkpoint is a weight average: the tab says so, and that the curves are an ingredient's
        page.get_by_text(f"average of {len(soup)} checkpoints").wait_for(state="visible")
        page.get_by_text(f"the first of the {len(soup)} checkpoints averaged").wait_for(state="visible")
        first = soup[0]["history"][-1]["val_miou"]
        assert f"{first:.3f}" not in text
    page.screenshot(path=ARTIFACTS / "3-curves.png", full_page=True)


def test_attention_click(page) -> None:
    open_tab(page, "Attention maps")
    page.locator("#attention-photo input[type=file]").set_input_files(str(PHOTO))
    maps = page.locator("#attention-maps img")
    maps.nth(3).wait_for(state="visible")
    info = page.locator("#attention-info")
    info.get_by_text("the centre").wait_for(state="visible")
    # Click the photo at a quarter of its width and height: the query point follows, marked on the photo.
    photo = page.locator("#attention-photo img").first
    box = photo.bounding_box()
    photo.click(position={"x": box["width"] / 4, "y": box["height"] / 4})
    info.get_by_text("Query point: (").wait_for(state="visible")
    assert maps.count() == 4
    marked = page.locator("#attention-point img").first
    marked.wait_for(state="visible")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=marked.element_handle())
    pixel = marked.evaluate(
        "img => { const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;"
        " const g = c.getContext('2d'); g.drawImage(img, 0, 0);"
        " return [...g.getImageData(Math.round(c.width / 4), Math.round(c.height / 4), 1, 1).data].slice(0, 3); }"
    )
    assert abs(pixel[0] - 0) < 60 and pixel[1] > 190 and pixel[2] > 190, pixel  # cyan under the clicked point
    # Table headers are one line each: no "stag e" or "head s".
    assert set(lines_of(page, "#attention-info th")) == {1}
    page.screenshot(path=ARTIFACTS / "4-attention.png", full_page=True)


def test_attention_each_head_and_enter(page) -> None:
    """'Each head' shows every map with its whole caption in view of the gallery; Enter in x or y applies it."""
    open_tab(page, "Attention maps")
    page.get_by_label("each head").check()
    info = page.locator("#attention-info")
    maps = page.locator("#attention-maps button.thumbnail-item")
    page.wait_for_function("() => document.querySelectorAll('#attention-maps button.thumbnail-item').length > 4")
    box = page.locator("#attention-maps").bounding_box()
    last = maps.last.bounding_box()
    assert last["y"] + last["height"] <= box["y"] + box["height"] + 1, (last, box)
    cut = page.evaluate(
        "() => [...document.querySelectorAll('#attention-maps .caption-label')]"
        ".filter(c => c.scrollWidth > c.clientWidth + 1 || c.scrollHeight > c.clientHeight + 1).length"
    )
    assert cut == 0
    page.get_by_label("mean over heads").check()
    page.wait_for_function("() => document.querySelectorAll('#attention-maps button.thumbnail-item').length == 4")
    page.get_by_label("Query x").fill("100")
    page.get_by_label("Query y").fill("50")
    page.get_by_label("Query y").press("Enter")
    info.get_by_text("Query point: (100, 50)").wait_for(state="visible")
    page.screenshot(path=ARTIFACTS / "4-attention-heads.png", full_page=True)


def test_discussion_tab(page) -> None:
    """docs/DISCUSSION.md on its tab: its first heading, no HTML comment as text outside code, and each of its
    figures that exists loaded from the app (a figure not generated yet is named in a note instead)."""
    text = DISCUSSION.read_text(encoding="utf-8")
    targets = re.findall(r"!\[[^\]]*\]\(<?([^)>\s]+)", text)
    assert targets, f"{DISCUSSION} links no figure"
    open_tab(page, "Design questions")
    # A table of contents whose every link leads to a heading of the page.
    links = page.locator("#discussion-contents a")
    links.first.wait_for(state="visible")
    targets_found = links.evaluate_all(
        "links => links.map(a => !!document.getElementById(decodeURIComponent(a.hash.slice(1))))"
    )
    assert len(targets_found) == len(re.findall(r"^## ", text, re.MULTILINE)) and all(targets_found)
    tab = page.locator("#discussion")
    heading = re.search(r"^#+\s+(.+)$", text, re.MULTILINE)[1].replace("`", "").replace("*", "")
    tab.get_by_role("heading", name=heading).first.wait_for(state="visible")
    shown = tab.evaluate(
        "element => { const copy = element.cloneNode(true); copy.querySelectorAll('code').forEach(c => c.remove());"
        " return copy.innerText; }"
    )
    assert "<!--" not in shown and "-->" not in shown
    for target in targets:
        path = (DISCUSSION.parent / unquote(target)).resolve()
        if not path.is_file():
            tab.get_by_text(f"missing figure: {target}").wait_for(state="visible")
            continue
        image = tab.locator(f'img[src$="{quote(str(path))}"]').first
        image.scroll_into_view_if_needed()
        image.wait_for(state="visible")
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    page.screenshot(path=ARTIFACTS / "5-discussion.png", full_page=True)


def test_about_tab(page, url: str) -> None:
    """The API example names this page's own address (the example that tests/test_app.py runs against a live
    server), and the code version reads as words, not '-dirty'."""
    import app

    open_tab(page, "About")
    page.get_by_text("parameters").locator("visible=true").first.wait_for(state="visible")  # not the hidden tabs
    page.locator("#api-example").get_by_text(f'Client("{url}")').wait_for(state="visible")
    first = sorted(path.stem for path in (EXAMPLES / "validation" / "images" / "val").glob("*.jpg"))[0]
    code = re.fullmatch(r"```python\n(.*)```", app.api_example(url, first), re.DOTALL)[1]
    assert page.locator("#api-example code").inner_text().strip() == code.strip()
    assert "-dirty" not in page.locator("body").inner_text()
    page.screenshot(path=ARTIFACTS / "6-about.png", full_page=True)


def write_y4m(frames: list[np.ndarray], path: Path, fps: int) -> None:
    """RGB frames (H, W, 3) of one even size as a YUV4MPEG2 video, 4:2:0, the format Chromium's fake camera plays:
    per frame the Y plane, then Cb and Cr averaged over 2x2 blocks (JPEG's full-range BT.601)."""
    height, width = frames[0].shape[:2]
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for rgb in frames:
            ycbcr = np.asarray(Image.fromarray(rgb).convert("YCbCr"), dtype=np.float32)
            chroma = ycbcr[..., 1:].reshape(height // 2, 2, width // 2, 2, 2).mean(axis=(1, 3))
            out.write(b"FRAME\n" + ycbcr[..., 0].round().astype(np.uint8).tobytes())
            out.write(np.moveaxis(chroma, -1, 0).round().astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def camera_browser(browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Chromium whose camera plays a video of DAVIS 2016 frames (a swan, then a car: 2 frames a second, looped)."""
    video = tmp_path_factory.mktemp("camera") / "camera.y4m"
    sequences = ("blackswan", "car-roundabout")
    paths = [path for name in sequences for path in sorted(DAVIS.glob(f"images/*/{name}_*.jpg"))[:4]]
    write_y4m([np.asarray(Image.open(path).convert("RGB")) for path in paths], video, fps=2)
    fake = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
    camera = browser.browser_type.launch(
        executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *fake, f"--use-file-for-fake-video-capture={video}"]
    )
    yield camera
    camera.close()


def overlay_pixels(page, src: str) -> np.ndarray:
    """The overlay image at ``src``, as the page fetched it."""
    return np.asarray(Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB"), dtype=np.int16)


@pytest.mark.parametrize("width, height", [(1280, 800), (390, 844)])
def test_live_camera_streams_overlays_that_follow_the_video(camera_browser, url: str, width: int, height: int) -> None:
    """The camera tab on a fake camera playing a video: once Record is pressed, overlays arrive at the frame's size
    and change with the video (the mean pixel changes by more than 20 of 255 when the swan turns into the car), the
    class shares and the working size are shown; then Stop ends the stream."""
    page = camera_browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    open_tab(page, "Live camera")
    camera = page.locator("#camera")
    camera.get_by_title("grant webcam access").click()
    camera.get_by_text("Record").click()
    seen: list[str] = []
    first = changed = None
    while changed is None or changed < 20:  # until the overlay shows the car after the swan (or the swan after the car)
        page.wait_for_function(
            "seen => { const img = document.querySelector('#camera-overlay img');"
            " return img && img.complete && img.naturalWidth > 0 && !seen.includes(img.src); }",
            arg=seen,
        )
        seen.append(page.locator("#camera-overlay img").get_attribute("src"))
        picture = overlay_pixels(page, seen[-1])
        first = picture if first is None else first
        changed = np.abs(picture - first).mean()
        assert picture.shape == (360, 640, 3) and len(seen) < 100
    shares = page.locator("#camera-shares")
    for name in ("background", "plant", "person/animal", "vehicle"):
        shares.get_by_text(name, exact=True).wait_for(state="visible")
    assert "network ran at 455×256" in page.locator("#camera-info").inner_text()
    page.screenshot(path=ARTIFACTS / f"7-camera-{width}.png", full_page=True)
    camera.get_by_text("Stop").click()
    page.close()
