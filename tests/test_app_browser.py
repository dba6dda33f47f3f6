"""The app in a real browser: headless Chromium (Playwright) against `python app.py` (tests/servers.py).

Screenshots go to tests/artifacts/ (gitignored). Chromium comes from Debian (`make browser`, run by `make test`);
the test is skipped only when /usr/bin/chromium is missing.
"""

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
from servers import AppServer

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
TIMEOUT_MS = 60_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (run `make browser` or apt-get install chromium)"
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
def page(url: str) -> Iterator:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        yield page
        browser.close()


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def test_upload_shows_overlay(page) -> None:
    page.locator("#segment-photo input[type=file]").set_input_files(str(PHOTO))
    # The overlay (the photo blended with its class colours) and the legend naming every class.
    page.locator("#overlay img").first.wait_for(state="visible")
    for name in ("background", "plant", "person/animal", "vehicle"):
        assert page.locator("#overlay-legend").get_by_text(name).is_visible()
    assert page.get_by_text("Inference").first.is_visible()
    page.screenshot(path=ARTIFACTS / "1-segment.png", full_page=True)


def test_validation_example_shows_three_panels(page) -> None:
    open_tab(page, "Validation examples")
    page.locator("#validation-gallery button.thumbnail-item").nth(4).click()
    panels = page.locator("#validation-panels img")
    panels.nth(2).wait_for(state="visible")
    assert panels.count() == 3
    page.get_by_text("pixel accuracy").first.wait_for(state="visible")
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
    open_tab(page, "Training curves")
    page.locator("#curves").first.wait_for(state="visible")
    import app
    from segformer import read_metadata

    soup = read_metadata(app.DEFAULT_CHECKPOINT).get("soup")
    if soup:  # the shipped checkpoint is a weight average: the tab says so and names its ingredients
        page.get_by_text(f"average of {len(soup)} checkpoints").wait_for(state="visible")
        page.get_by_text(soup[0]["checkpoint"]).first.wait_for(state="visible")
    page.screenshot(path=ARTIFACTS / "3-curves.png", full_page=True)


def test_attention_click(page) -> None:
    open_tab(page, "Attention maps")
    page.locator("#attention-photo input[type=file]").set_input_files(str(PHOTO))
    maps = page.locator("#attention-maps img")
    maps.nth(3).wait_for(state="visible")
    info = page.locator("#attention-info")
    info.get_by_text("the centre").wait_for(state="visible")
    # Click the photo at a quarter of its width and height: the query point follows.
    photo = page.locator("#attention-photo img").first
    box = photo.bounding_box()
    photo.click(position={"x": box["width"] / 4, "y": box["height"] / 4})
    info.get_by_text("Query point: (").wait_for(state="visible")
    assert maps.count() == 4
    page.screenshot(path=ARTIFACTS / "4-attention.png", full_page=True)


def test_discussion_tab(page) -> None:
    """docs/DISCUSSION.md on its tab: its first heading, no HTML comment as text outside code, and each of its
    figures that exists loaded from the app (a figure not generated yet is named in a note instead)."""
    text = DISCUSSION.read_text(encoding="utf-8")
    targets = re.findall(r"!\[[^\]]*\]\(<?([^)>\s]+)", text)
    assert targets, f"{DISCUSSION} links no figure"
    open_tab(page, "Design questions")
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


def test_about_tab(page) -> None:
    open_tab(page, "About")
    page.get_by_text("parameters").locator("visible=true").first.wait_for(state="visible")  # not the hidden tabs
    page.screenshot(path=ARTIFACTS / "6-about.png", full_page=True)
