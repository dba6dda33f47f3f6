"""SegFormer demo page: segment a photo, validation examples, training curves, attention maps, design questions, about.

    python app.py [--checkpoint PATH | hf://ORG/REPO/NAME] [--port N] [--host NAME]

The checkpoint defaults to $SEGFORMER_CHECKPOINT, else checkpoints/segformer-b0-4class beside this file. Port
and host default to gradio's GRADIO_SERVER_PORT (else 7860) and GRADIO_SERVER_NAME (else 127.0.0.1).
Importing this module starts nothing: main() loads the model once, then serves build_demo(model).
The computing lives in the demo package (one module per subject); this file is the page and its wiring. The Design
questions tab shows docs/DISCUSSION.md with its figures (served from docs/), and the About tab's text is
docs/about.md.

Anyone can call the API, so every argument is checked before any work (demo.arguments), a photo is read only from
gradio's upload cache (demo.uploads) and decoded at a bounded size (demo.photo), and a visitor's page state keeps
no arrays (demo.views). A caller's mistake gets one line on the page or in the API's answer and one line in the log.
"""

import argparse
import functools
import logging
import os
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from string import Template

import gradio as gr
import numpy as np

from demo import arguments
from demo.arguments import ArgumentError
from demo.attention import (
    ATTENTION_SIDE,
    attention_maps,
    captioned_heatmaps,
    grids_table,
    mark_point,
    working_image,
)
from demo.camera import CONSTRAINTS, STREAM_EVERY_S, STREAMS, TIME_LIMIT_S, Camera
from demo.checkpoints import CheckpointError, load_model
from demo.curves import continued_note, history_note, last_epoch_rows, soup_note, teacher_note
from demo.docs import contents, read_page_markdown
from demo.ground_truth import (
    HATCH_COLOURS,
    disagreement,
    example_label,
    example_report,
    pooled_scores,
    read_pairs,
    truth_picture,
)
from demo.mask_route import PATH as MASK_PATH
from demo.mask_route import MaskRoute
from demo.masks import MaskFiles
from demo.photo import MAX_OTHER_PIXELS, Photo, decode_photo
from demo.segment import DISPLAY_SIDE, class_shares, downscale, segment, side_by_side, working_rule
from demo.uploads import NoUpload, UploadRefused, cached_upload
from demo.views import RecentViews
from segformer.allocator import keep_freed_memory
from segformer.checkpoint import DEFAULT_CHECKPOINT
from segformer.hub import CHECKPOINT_PREFIX
from segformer.images import IGNORE_COLOUR, MAX_PIXELS, InputError, blend, colourise
from segformer.segmenter import Segmenter
from task import corruptions
from task.classes import CLASS_NAMES
from task.curves import history_figure

APP_DIR = Path(__file__).resolve().parent
EXAMPLES = APP_DIR / "examples"
#: The bundled photos under the Segment and Attention tabs; the first is segmented when the page is built.
PHOTOS = EXAMPLES / "photos"
DOCS = APP_DIR / "docs"
ABOUT = DOCS / "about.md"
DISCUSSION = DOCS / "DISCUSSION.md"
#: Requests allowed to wait in the queue; beyond that a caller is told that the queue is full.
QUEUE_SIZE = 64
#: Largest file accepted, in bytes: an upload to gradio, or the body of a POST /mask.
MAX_UPLOAD = 100 * 1024 * 1024
#: Requests POST /mask takes at once (being read, waiting or running): each holds at most MAX_UPLOAD bytes.
MASK_SLOTS = 4
#: Full-size masks kept on disk for download (older ones are deleted; gradio has copied them by then).
KEPT_MASKS = 32
#: Largest mask returned at the photo's own size; a larger photo's mask comes back at 1/2, 1/3, ... of each side.
MASK_PIXELS = 16_000_000
#: The corruption control's "none", and the seed of every corruption's random draws (the same photo, the same pixels).
NO_CORRUPTION, CORRUPTION_SEED = "none", 0
#: The attention tab decodes at most this many pixels (its maps are computed at ATTENTION_SIDE).
ATTENTION_PIXELS = 4_000_000
#: Display-size views kept for the opacity slider, shared by all visitors (compressed: 100 photos of 1024x768 or so).
VIEW_BYTES, VIEW_TTL_S = 24 << 20, 3600
#: Visitors' page states that gradio keeps (its default is 10,000, each with its own copy of the page's settings).
PAGE_STATES_KEPT = 1000
MEAN_OF_HEADS, EACH_HEAD = "mean over heads", "each head"
#: The overlay's opacity until a visitor moves the slider.
OPACITY = 0.55
#: The key of the first example's view, kept for the whole life of the app (RecentViews' keys are random hex).
FIRST_VIEW = "first-example"
#: Every event that runs the network shares one worker: two at once would only split the CPU between them.
MODEL_EVENTS = {"concurrency_id": "model", "concurrency_limit": 1}
#: Titles of the error toast, by the kind of mistake.
TITLES = {
    InputError: "Cannot use this image",
    UploadRefused: "Upload again",
    NoUpload: "No image",
    ArgumentError: "Wrong argument",
}
#: Markdown tables: headers never break inside a word; a table wider than its box scrolls instead. The galleries
#: of validation examples and of attention maps show every picture (no box of fixed height that cuts them off).
#: On a phone the title is set smaller, so that it takes two lines, not four.
CSS = """
@media (max-width: 640px) { #title h1 { font-size: 1.1rem; line-height: 1.3; } }
.prose table { display: block; max-width: 100%; overflow-x: auto; }
.prose th { white-space: nowrap; word-break: normal; overflow-wrap: normal; }
.prose td { word-break: normal; overflow-wrap: break-word; }
#attention-maps .caption-label { white-space: normal; overflow: visible; text-overflow: clip; }
#validation-gallery .grid-wrap, #attention-maps .grid-wrap { max-height: none; height: auto; overflow: visible; }
"""
#: After a validation example is picked: bring its result into view.
SCROLL_TO_RESULT = "() => document.getElementById('validation-panels')?.scrollIntoView({behavior: 'smooth'})"
#: An event of the page that is not part of the API.
PAGE_ONLY = {"api_visibility": "private"}
LOG = logging.getLogger("segformer.app")
#: The line of docs/about.md that the API example replaces.
API_EXAMPLE = "$api_example"


MISTAKES = (ArgumentError, UploadRefused, NoUpload, InputError)


def logged(endpoint: str, err: Exception) -> tuple[str, str]:
    """(one-line message, title) of a caller's mistake, logged as one line."""
    message = " ".join(str(err).split())
    LOG.info("%s refused: %s", endpoint, message)
    return message, next(title for kind, title in TITLES.items() if isinstance(err, kind))


def refusing(endpoint: str) -> Callable[[Callable], Callable]:
    """Decorate an event's function so that a caller's mistake (MISTAKES) ends it with a one-line message on the
    page or in the API's answer, and one line in the log, not a traceback."""

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def run(*args: object) -> object:
            try:
                return fn(*args)
            except MISTAKES as err:
                message, title = logged(endpoint, err)
                raise gr.Error(message, title=title, print_exception=False) from None

        return run

    return decorate


class PageRuns:
    """The page's own runs of an event on a new photo. A caller's mistake shows one warning and returns the
    outputs cleared (the photo box emptied too) instead of failing: a failed event leaves a broken image in the
    box. Gradio's page sends a photo it cannot show twice, so a visitor's second run on a photo just refused is
    skipped: one run, one message."""

    #: Refusals remembered, and for how long a repeat of one is skipped.
    KEPT, REPEAT_S = 256, 10.0

    def __init__(self, endpoint: str, fn: Callable[..., tuple], cleared: tuple) -> None:
        self.endpoint, self.fn, self.cleared = endpoint, fn, cleared
        self._refused: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()

    def run(self, args: tuple, visitor: str | None) -> tuple:
        """(gr.skip() for the photo, *the outputs of fn(*args)), or the cleared outputs after a mistake; ``visitor``
        is gradio's id of the visitor's page (``request.session_hash``)."""
        key = (visitor or "", str(args[0].get("path")) if isinstance(args[0], dict) else "")
        with self._lock:
            refused = self._refused.get(key)
            if refused is not None and time.monotonic() - refused < self.REPEAT_S:
                return tuple(gr.skip() for _ in self.cleared)
        try:
            return (gr.skip(), *self.fn(*args))
        except MISTAKES as err:
            message, title = logged(self.endpoint, err)
            with self._lock:
                self._refused[key] = time.monotonic()
                while len(self._refused) > self.KEPT:
                    self._refused.popitem(last=False)
            gr.Warning(message, title=title)
            return self.cleared


def read_upload(payload: object, cache: Path, max_pixels: int) -> tuple[Photo, str | None]:
    """The uploaded photo (not preprocessed by gradio: decoded here, reduced to at most ``max_pixels``) and its
    file name; only a file in gradio's upload cache ``cache`` is read (demo.uploads: NoUpload without a photo)."""
    path, name = cached_upload(payload, cache)
    return decode_photo(path, max_pixels), name


def upload_cache() -> Path:
    """Gradio's upload folder (GRADIO_TEMP_DIR, else its folder in the system's temporary one), resolved."""
    return Path(os.path.realpath(gr.utils.get_upload_folder()))


def hex_colour(colour: list[int] | tuple[int, ...]) -> str:
    """'#rrggbb' of an RGB triple."""
    return "#" + "".join(f"{int(c):02x}" for c in colour)


def shown_path(source: str) -> str:
    """A checkpoint as the page names it: relative to the app's folder when inside it."""
    path = Path(source).resolve()
    local = not source.startswith(CHECKPOINT_PREFIX) and path.is_relative_to(APP_DIR)
    return str(path.relative_to(APP_DIR)) if local else source


def legend_html(loaded: Segmenter, labels: bool = False) -> str:
    """Colour swatches naming each class (and, with ``labels``, how ground truth shows unlabelled and partially
    labelled pixels)."""
    items = [(name, hex_colour(colour)) for name, colour in zip(loaded.classes, loaded.palette.tolist(), strict=True)]
    if labels:
        light, lighter = (hex_colour(colour) for colour in HATCH_COLOURS)
        items += [
            ("not labelled (not scored)", hex_colour(IGNORE_COLOUR)),
            (
                "partial label: one of a few classes, e.g. “not a cat” (left out of IoU)",
                f"repeating-linear-gradient(-45deg, {light} 0 3px, {lighter} 3px 6px)",
            ),
        ]
    swatch = '<span style="display:inline-block;width:0.9em;height:0.9em;background:{};border:1px solid #888"></span>'
    # A swatch and the first word of its name never part at a line break (a phone's width broke "vehicle" off).
    return " &nbsp; ".join(
        f'<span style="white-space:nowrap">{swatch.format(background)} {first}</span>{" " + rest if rest else ""}'
        for (first, _, rest), background in ((name.partition(" "), background) for name, background in items)
    )


def example_photos() -> list[Path]:
    """The bundled example photos, in the order the page lists them."""
    return sorted(PHOTOS.glob("*.jpg"))


def photo_input(label: str, height: int, elem_id: str, value: Path | None = None) -> gr.Image:
    """A photo from an upload, the webcam or the clipboard (kept as a file: the app decodes it), showing ``value``
    at first, with the bundled example photos below it."""
    photo = gr.Image(
        value=None if value is None else str(value),
        type="filepath",
        sources=["upload", "webcam", "clipboard"],
        label=label,
        height=height,
        elem_id=elem_id,
    )
    gr.Examples([[str(p)] for p in example_photos()], inputs=[photo], label="Example photos (validation images)")
    return photo


# ---------------------------------------------------------------------------- tab 1: segment a photo


def segment_tab(loaded: Segmenter, cache: Path) -> None:
    """Upload/webcam/clipboard photo -> overlay with legend and opacity, class shares, timing, and the mask at the
    photo's size (at a whole fraction of it beyond MASK_PIXELS). The page opens on the first example photo,
    segmented once, when the page is built."""
    masks = MaskFiles(KEPT_MASKS, loaded.palette)
    views = RecentViews(VIEW_BYTES, VIEW_TTL_S)

    def segmented(
        photo: Photo, name: str | None, opacity: float, start: float, corruption: str = NO_CORRUPTION, level: int = 3
    ) -> tuple:
        """Overlay, class shares, timing text, the mask PNG and the display-size view (photo and mask) of a decoded
        photo, corrupted first at the working size unless ``corruption`` is NO_CORRUPTION; ``start`` is when its
        request began."""
        rgb = photo.rgb
        if corruption != NO_CORRUPTION:
            began = time.perf_counter()
            rgb = corruptions.corrupt(
                corruptions.working_image(rgb, loaded.short_side, loaded.max_side), corruption, level, CORRUPTION_SEED
            )
            corrupt_seconds = time.perf_counter() - began
        mask, seconds, (work_w, work_h) = segment(loaded, rgb)
        table = class_shares(mask, loaded.classes)
        view = downscale(rgb, mask, DISPLAY_SIDE)
        if corruption != NO_CORRUPTION:
            view = side_by_side(*view)
        mask_path = masks.save(mask, name)
        width, height = photo.size
        mask_h, mask_w = mask.shape
        info = (
            f"Photo **{width}×{height}**; the network ran at {work_w}×{work_h} ({working_rule(loaded)}) "
            f"and its logits were upsampled to {mask_w}×{mask_h} before the argmax. "
            f"Inference **{seconds:.2f} s** (whole request {time.perf_counter() - start:.2f} s). The mask file is a "
            "PNG at that size, one class id per pixel."
        )
        if photo.reduced:
            info += (
                f"\n\nThe photo is over {MASK_PIXELS / 1e6:.0f} megapixels, so it was decoded at 1/{photo.factor} "
                f"of each side and its mask comes back at {mask_w}×{mask_h}, not at the photo's own size."
            )
        if photo.animated:
            info += "\n\nThe file holds several frames (an animation or pages): only the first was segmented."
        if corruption != NO_CORRUPTION:
            info += (
                f"\n\n**{corruptions.LABELS[corruption]}, severity {level}** (seed {CORRUPTION_SEED}), applied at "
                f"the working size in {corrupt_seconds:.2f} s: the corrupted photo is on the left, its segmentation on "
                "the right, and the mask file is at the working size."
            )
        return blend(*view, loaded.palette, opacity), table, info, str(mask_path), view

    def segment_photo(
        image: object = None, opacity: object = OPACITY, corruption: object = NO_CORRUPTION, level: object = 3
    ) -> tuple:
        """Overlay, class shares, timing text, the mask PNG, and the key of the display-size view kept for
        recolouring (the arguments are checked first, the network runs last)."""
        start = time.perf_counter()
        alpha = arguments.opacity(opacity)
        corruption = arguments.corruption(corruption, (NO_CORRUPTION, *corruptions.CORRUPTIONS))
        level = arguments.severity(level, corruptions.SEVERITIES)
        photo, name = read_upload(image, cache, MASK_PIXELS)
        *shown, view = segmented(photo, name, alpha, start, corruption, level)
        return *shown, views.add(view)

    api_segment = refusing("/segment")(segment_photo)
    cleared = (None, None, "", None, None)
    page_runs = PageRuns("/segment", segment_photo, (None, *cleared))

    def page_segment(image: object, opacity: object, corruption: object, level: object, request: gr.Request) -> tuple:
        """segment_photo run by the page (PageRuns): the photo box too is cleared after a mistake; a photo box
        the visitor emptied empties the outputs."""
        if image is None:
            return gr.skip(), *cleared
        return page_runs.run((image, opacity, corruption, level), request.session_hash)

    first = example_photos()[0]
    *first_shown, first_view = segmented(decode_photo(first, MASK_PIXELS), first.name, OPACITY, time.perf_counter())

    @refusing("opacity")
    def recolour(key: object, opacity: object) -> object:
        """The kept view blended at the new opacity (no network); unchanged when no view is kept for ``key``."""
        alpha = arguments.opacity(opacity)
        view = first_view if key == FIRST_VIEW else views.get(key)
        if view is None:
            if key is not None:
                gr.Info("This photo's colours are no longer kept; upload it again to change the opacity.")
            return gr.skip()
        return blend(*view, loaded.palette, alpha)

    gr.Markdown(
        "This is the first example photo, segmented when the app started: upload, snap or paste a photo of your own, "
        "or click another example.",
        elem_id="segment-hint",
    )
    with gr.Row():
        with gr.Column(scale=2):
            photo = photo_input("Photo", 400, "segment-photo", value=first)
            opacity_slider = gr.Slider(0.0, 1.0, value=OPACITY, step=0.05, label="Overlay opacity")
            with gr.Row(elem_id="corruption"):
                corruption = gr.Dropdown(
                    [("None", NO_CORRUPTION), *((corruptions.LABELS[name], name) for name in corruptions.CORRUPTIONS)],
                    value=NO_CORRUPTION,
                    label="Corrupt the photo first",
                    info="The paper's robustness test (Section 4.4): a corruption at the working size, then the "
                    "network. Glass blur, frost and spatter are left out here (too slow, or they need files).",
                    elem_id="corruption-type",
                )
                severity = gr.Slider(1, 5, value=3, step=1, label="Severity", elem_id="corruption-severity")
        with gr.Column(scale=3):
            first_overlay, first_shares, first_info, first_mask = first_shown
            result = gr.Image(
                first_overlay, label="Segmentation", format="jpeg", height=400, interactive=False, elem_id="overlay"
            )
            gr.HTML(legend_html(loaded), elem_id="overlay-legend")
            shares = gr.Label(first_shares, label="Share of each class", show_heading=False, elem_id="shares")
            info = gr.Markdown(first_info, label="Details", elem_id="segment-info")
            mask_file = gr.File(first_mask, label="Mask (PNG of class ids)", elem_id="mask")
    view = gr.State(FIRST_VIEW)
    outputs = [result, shares, info, mask_file, view]
    page_inputs = [photo, opacity_slider, corruption, severity]
    for event in (photo.change, corruption.change, severity.release):
        event(page_segment, page_inputs, [photo, *outputs], preprocess=False, **MODEL_EVENTS, **PAGE_ONLY)
    # The API's entry: the same function, failing with the message (the page's own runs clear instead). Its photo
    # is an input of its own, empty: a client that sends no image is told so, not given the first example.
    api_photo = gr.Image(type="filepath", label="Photo", visible=False)
    gr.Button(visible=False).click(
        api_segment, [api_photo, opacity_slider], outputs, api_name="segment", preprocess=False, **MODEL_EVENTS
    )
    # The same with a corruption first (the page's control): an endpoint of its own, so /segment's callers keep
    # their two arguments.
    gr.Button(visible=False).click(
        api_segment,
        [api_photo, opacity_slider, corruption, severity],
        outputs,
        api_name="segment_corrupted",
        preprocess=False,
        **MODEL_EVENTS,
    )
    opacity_slider.change(recolour, [view, opacity_slider], result, api_visibility="private", show_progress="hidden")


# ---------------------------------------------------------------------------- the live camera


def camera_tab(loaded: Segmenter) -> None:
    """The browser's camera streamed to the network (demo.camera): the overlay, the class shares and the time per
    frame follow the camera at the stream's working size. Streams have a concurrency group of their own, so a
    stream never keeps a photo waiting in the queue, and the server ends each after TIME_LIMIT_S."""
    camera = Camera(loaded)

    @refusing("camera")
    def segment_frame(frame: object, opacity: object) -> tuple:
        """Overlay, class shares and timing text of one frame; nothing changes when the frame is dropped."""
        segmented = camera(frame, arguments.opacity(opacity))
        if segmented is None:  # another frame is being segmented
            return gr.skip(), gr.skip(), gr.skip()
        (height, width), (work_w, work_h) = segmented.mask.shape, segmented.working
        info = f"Frame {width}×{height}; the network ran at {work_w}×{work_h} in **{segmented.seconds:.2f} s**."
        return segmented.overlay, segmented.shares, info

    gr.Markdown(
        f"Press **Record** to stream your camera: a frame every {STREAM_EVERY_S:g} s (dropped while the one before "
        f"is still being segmented), for {TIME_LIMIT_S} s at a time.",
        elem_id="camera-hint",
    )
    with gr.Row():
        with gr.Column(scale=2):
            webcam = gr.Image(
                sources=["webcam"],
                streaming=True,
                label="Camera",
                webcam_options=gr.WebcamOptions(constraints=CONSTRAINTS),
                elem_id="camera",
            )
            opacity_slider = gr.Slider(0.0, 1.0, value=OPACITY, step=0.05, label="Overlay opacity")
        with gr.Column(scale=3):
            overlay = gr.Image(label="Segmentation", format="jpeg", interactive=False, elem_id="camera-overlay")
            gr.HTML(legend_html(loaded), elem_id="camera-legend")
            shares = gr.Label(label="Share of each class", show_heading=False, elem_id="camera-shares")
            info = gr.Markdown(elem_id="camera-info")
    webcam.stream(
        segment_frame,
        [webcam, opacity_slider],
        [overlay, shares, info],
        preprocess=False,
        stream_every=STREAM_EVERY_S,
        time_limit=TIME_LIMIT_S,
        concurrency_id="camera",
        concurrency_limit=STREAMS,
        show_progress="hidden",
        **PAGE_ONLY,
    )


# ---------------------------------------------------------------------------- tab 2: validation examples


def validation_tab(loaded: Segmenter, pairs: dict, predictions: dict) -> None:
    """Gallery of bundled validation images; one selected -> image | truth | prediction, IoU, disagreement map.

    ``predictions`` holds each example's mask and inference seconds, computed once when the page is built."""
    if loaded.classes != CLASS_NAMES:
        gr.Markdown(
            f"The bundled examples are labelled with the classes {', '.join(CLASS_NAMES)}; this checkpoint "
            f"predicts {', '.join(loaded.classes)}, so there is nothing to compare."
        )
        return
    folder = EXAMPLES / "validation"
    names = list(pairs)

    def outputs(name: str) -> tuple:
        """Image, ground truth, prediction, disagreement map, IoU table and summary of one validation example."""
        rgb, truth = pairs[name]
        prediction, seconds = predictions[name]
        rows, summary = example_report(name, rgb, truth, prediction, seconds, loaded.classes)
        return (
            rgb,
            truth_picture(truth, loaded.palette),
            colourise(prediction, loaded.palette),
            disagreement(rgb, prediction, truth),
            rows,
            summary,
        )

    @refusing("/validation_example")
    def show_example(name: object = None) -> tuple:
        """The example called ``name`` (checked against the bundled names first)."""
        return outputs(arguments.example_name(name, pairs, names[0]))

    def show_picked(name: str | None) -> tuple:
        """The example picked on the page; nothing when the dropdown is cleared."""
        return outputs(name) if name in pairs else (None, None, None, None, None, "")

    gr.Markdown(
        f"{len(names)} validation images bundled with the app (a few from each source, labels mapped to the "
        "4 classes, short side ≤ 256 px). Pick one to compare the model with the ground truth. Where a source "
        "labels a pixel only as one of a few classes (a partial label, hatched), a prediction is wrong only "
        "outside that set."
    )
    columns = 7
    gallery = gr.Gallery(
        [(str(folder / "images" / "val" / f"{name}.jpg"), example_label(name)) for name in names],
        columns=columns,
        allow_preview=False,
        label="Validation examples",
        elem_id="validation-gallery",
    )
    choice = gr.Dropdown(
        [(example_label(name), name) for name in names], value=None, label="Validation example", elem_id="choice"
    )
    gr.HTML(legend_html(loaded, labels=True))
    with gr.Row(elem_id="validation-panels"):
        image_out = gr.Image(label="Image", interactive=False)
        truth_out = gr.Image(label="Ground truth", interactive=False)
        prediction_out = gr.Image(label="Prediction", interactive=False)
    with gr.Row():
        with gr.Column():
            wrong_out = gr.Image(label="Disagreement", interactive=False)
            gr.Markdown(
                "Disagreement: yellow where the prediction ≠ the truth, or is outside a partial label's set; white "
                "where nothing is labelled."
            )
        with gr.Column():
            summary_out = gr.Markdown(label="Summary", elem_id="validation-summary")
            table_out = gr.Dataframe(
                headers=["class", "IoU", "truth share", "predicted share"], label="This image, per class"
            )

    def pick(evt: gr.SelectData) -> str:
        return names[evt.index]

    shown = [image_out, truth_out, prediction_out, wrong_out, table_out, summary_out]
    gallery.select(pick, None, choice, api_visibility="private")
    choice.change(show_picked, choice, shown, api_visibility="private").then(
        None, None, None, js=SCROLL_TO_RESULT, api_visibility="private"
    )
    # The API's entry (the page's own picks come through the dropdown's change above, where empty means clear).
    api = gr.Button(visible=False)
    api.click(show_example, choice, shown, api_name="validation_example", preprocess=False)


# ---------------------------------------------------------------------------- tab 3: training curves


def served_scores_text(loaded: Segmenter, pairs: dict, predictions: dict) -> str:
    """The served weights' own scores: pooled over the bundled validation examples, as predicted at start."""
    if loaded.classes != CLASS_NAMES or not pairs:
        return "The bundled validation examples do not use this checkpoint's classes, so it is not scored here."
    pooled = pooled_scores([(predictions[name][0], truth) for name, (_, truth) in pairs.items()], loaded.classes)
    per_class = ", ".join(
        f"{name} {'—' if iou is None else f'{iou:.3f}'}" for name, iou in pooled["per_class_iou"].items()
    )
    return (
        f"**The weights served here**, on the {len(pairs)} validation images bundled with the app (all their "
        f"pixels pooled, partial labels left out, as in the model card): mIoU **{pooled['miou']:.3f}**, pixel "
        f"accuracy **{pooled['pixel_acc']:.1%}**; IoU {per_class}. Computed when the app started; the model "
        "card gives their scores on the full val splits."
    )


def curves_tab(loaded: Segmenter, pairs: dict, predictions: dict) -> None:
    """The served weights' scores, then the loss and IoU per epoch of the training run in the checkpoint's
    history (for an average of checkpoints, its first ingredient's, said so), and that run's recipe
    (the texts: demo.curves)."""
    gr.Markdown(served_scores_text(loaded, pairs, predictions), elem_id="served-scores")
    meta = loaded.metadata
    if soup := soup_note(meta):
        gr.Markdown(soup)
    if history := history_note(meta):
        gr.Markdown(history)
        gr.Plot(history_figure(meta["history"]), label="Training curves", elem_id="curves")
        last = meta["history"][-1]["epoch"]
        gr.Dataframe(last_epoch_rows(meta), headers=["class", f"validation IoU after epoch {last}"])
    else:
        gr.Markdown(
            "This checkpoint has **no training history** (it was not written by `train/train.py`), "
            "so there are no curves to show.",
            elem_id="curves",
        )
    if recipe := meta.get("recipe"):
        if continued := continued_note(meta):
            gr.Markdown(continued)
        if taught := teacher_note(meta):
            gr.Markdown(taught)
        gr.JSON(recipe, label="Recipe (training arguments of the last stage)")


# ---------------------------------------------------------------------------- tab 4: attention maps


def attention_tab(loaded: Segmenter, cache: Path) -> None:
    """Click a point of a photo: where that query token attends in the last block of each of the 4 stages."""

    def attend(image: object = None, x: object = None, y: object = None, heads: object = MEAN_OF_HEADS) -> tuple:
        """The photo with the query point marked, the attention pictures with captions (as a gallery laid out
        for their number) and the text saying which point and grids they are for."""
        query_x, query_y = arguments.coordinate(x, "Query x"), arguments.coordinate(y, "Query y")
        heads = arguments.choice(heads, (MEAN_OF_HEADS, EACH_HEAD), "Heads")
        photo, _ = read_upload(image, cache, ATTENTION_PIXELS)
        width, height = photo.size
        query_x, query_y = arguments.within(query_x, width, "Query x"), arguments.within(query_y, height, "Query y")
        work = working_image(photo.rgb, ATTENTION_SIDE)
        work_h, work_w = work.shape[:2]
        centre = query_x is None or query_y is None
        px, py = (width / 2, height / 2) if centre else (query_x, query_y)
        point = (px * work_w / width, py * work_h / height)
        stages = attention_maps(loaded, work, point)
        items = captioned_heatmaps(work, stages, point, each_head=heads == EACH_HEAD)
        where = "the centre (click the photo to pick a point)" if centre else f"({px:.0f}, {py:.0f})"
        info = (
            f"Query point: {where} of the {width}×{height} photo, computed at {work_w}×{work_h}. Each map is "
            "the softmax attention of the stage's **last block** for the query token under the point (cyan "
            "square: that token's cell; cyan cross: the point), upsampled from the stage's reduced key grid and "
            "scaled to its maximum. Each key is the reduction of an R×R patch of the query grid; where R does not "
            "divide the grid, its last rows or columns belong to no key and no weight reaches them: they show "
            "the photo in grey.\n\n" + grids_table(stages)
        )
        scale = (width / work_w, height / work_h)
        return mark_point(work, point), items, info, scale

    api_attend = refusing("/attention")(attend)
    cleared = (None, None, "", None)
    page_runs = PageRuns("/attention", attend, (None, *cleared))

    def page_attend(image: object, x: object, y: object, heads: object, request: gr.Request) -> tuple:
        """attend run by the page on a new photo (PageRuns): the photo box too is cleared after a mistake; a photo
        box the visitor emptied empties the outputs."""
        if image is None:
            return gr.skip(), *cleared
        return page_runs.run((image, x, y, heads), request.session_hash)

    @refusing("/attention")
    def attend_shown(image: object, x: object, y: object, heads: object) -> tuple:
        """attend on the photo shown, when the heads are switched; nothing before there is a photo."""
        return tuple(gr.skip() for _ in cleared) if image is None else attend(image, x, y, heads)

    def clicked(evt: gr.SelectData) -> tuple[float, float]:
        return evt.index[0], evt.index[1]

    def layout(heads: str) -> gr.Gallery:
        """The maps' gallery laid out for their number: 2 a row for the 4 means, 4 a row for every head."""
        return gr.Gallery(columns=4 if heads == EACH_HEAD else 2)

    def clicked_marked(scale: tuple[float, float] | None, evt: gr.SelectData) -> tuple:
        """A click on the marked photo (shown at the working size) in the photo's own pixels."""
        if scale is None:
            return gr.skip(), gr.skip()
        return round(evt.index[0] * scale[0]), round(evt.index[1] * scale[1])

    gr.Markdown(
        "Pick a photo and click a point on it (or on the query point's picture). SegFormer's efficient "
        "self-attention compares each query token with keys reduced by a ratio R (8, 4, 2, 1 in stages 1–4), so "
        "each stage attends over a coarser grid."
    )
    with gr.Row():
        with gr.Column(scale=2):
            photo = photo_input("Photo (click a point)", 380, "attention-photo")
            with gr.Row():
                coordinate = {"info": "Enter to apply", "placeholder": "empty = centre", "precision": 0}
                x = gr.Number(label="Query x (pixels)", **coordinate)
                y = gr.Number(label="Query y (pixels)", **coordinate)
            heads = gr.Radio([MEAN_OF_HEADS, EACH_HEAD], value=MEAN_OF_HEADS, label="Heads")
            show = gr.Button("Show attention", variant="primary")
        with gr.Column(scale=3):
            marked = gr.Image(
                label="Query point",
                interactive=False,
                height=380,
                format="jpeg",
                elem_id="attention-point",
            )
            maps = gr.Gallery(
                label="Attention maps",
                columns=2,
                object_fit="contain",
                allow_preview=True,
                elem_id="attention-maps",
            )
            info = gr.Markdown(label="Details", elem_id="attention-info")
    scale = gr.State()  # photo pixels per pixel of the marked photo (two floats)
    inputs, outputs = [photo, x, y, heads], [marked, maps, info, scale]
    gr.on(
        [show.click, x.submit, y.submit],
        api_attend,
        inputs,
        outputs,
        api_name="attention",
        preprocess=False,
        **MODEL_EVENTS,
    )
    heads.change(layout, heads, maps, **PAGE_ONLY)
    heads.change(attend_shown, inputs, outputs, preprocess=False, **MODEL_EVENTS, **PAGE_ONLY)
    # gradio's number boxes show 0 for no value when the page is built; emptied once loaded (in the browser alone),
    # they show what an empty box means.
    gr.on(None, None, None, [x, y], js="() => [null, null]", **PAGE_ONLY)
    photo.change(lambda: (None, None), None, [x, y], **PAGE_ONLY).then(
        page_attend, inputs, [photo, *outputs], preprocess=False, **MODEL_EVENTS, **PAGE_ONLY
    )
    photo.select(clicked, None, [x, y], **PAGE_ONLY).then(
        api_attend, inputs, outputs, preprocess=False, **MODEL_EVENTS, **PAGE_ONLY
    )
    marked.select(clicked_marked, scale, [x, y], **PAGE_ONLY).then(
        api_attend, inputs, outputs, preprocess=False, **MODEL_EVENTS, **PAGE_ONLY
    )


# ---------------------------------------------------------------------------- tab 5: design questions


def discussion_tab() -> None:
    """docs/DISCUSSION.md, the design questions answered with measurements, with its figures (read at start),
    after a table of contents linking to each question."""
    text = read_page_markdown(DISCUSSION)
    toc = contents(text)
    if toc:
        gr.Markdown("**Contents**\n\n" + toc, elem_id="discussion-contents")
    gr.Markdown(text, elem_id="discussion", header_links=True)


# ---------------------------------------------------------------------------- tab 6: about


def code_version(version: object) -> str:
    """The code version recorded in a checkpoint, in words: git's '-dirty' suffix says what it means."""
    text = str(version or "?")
    if text.endswith("-dirty"):
        return f"`{text.removesuffix('-dirty')}` (with changes not yet committed when it was trained)"
    return f"`{text}`"


def page_address(request: gr.Request | None) -> str:
    """What a client should connect to: the Space's name on Hugging Face, else this page's own address as the
    browser reached it (a host name that is not a plain host[:port] falls back to 127.0.0.1:7860)."""
    space = os.environ.get("SPACE_ID", "")
    if re.fullmatch(r"[\w.-]+/[\w.-]+", space):
        return space
    headers = request.headers if request is not None else {}
    host = headers.get("x-forwarded-host") or headers.get("host") or ""
    scheme = "https" if headers.get("x-forwarded-proto") == "https" else "http"
    if not re.fullmatch(r"[\w.-]+(:\d{1,5})?|\[[0-9a-fA-F:]+\](:\d{1,5})?", host):
        host = "127.0.0.1:7860"
    return f"{scheme}://{host}/"


def api_example(address: str, example: str) -> str:
    """The About tab's example of the API, for a client of ``address``: each endpoint called with its arguments
    named, its outputs named as gradio_client's ``view_api()`` names them; ``example`` is a validation example."""
    return f"""```python
from gradio_client import Client, handle_file

client = Client("{address}")
# A file goes as handle_file(path or URL): gradio refuses a plain string before this app sees it.
segmentation, share_of_each_class, details, mask_png_of_class_ids = client.predict(
    image=handle_file("photo.jpg"), opacity=0.5, api_name="/segment"
)
image, ground_truth, prediction, disagreement, this_image_per_class, summary = client.predict(
    name="{example}", api_name="/validation_example"
)
# x and y in the photo's pixels; None for its centre.
query_point, attention_maps, details = client.predict(
    image=handle_file("photo.jpg"), x=None, y=None, heads="{MEAN_OF_HEADS}", api_name="/attention"
)
```"""


def about_tab(loaded: Segmenter, example: str) -> gr.Markdown:
    """docs/about.md (the model, how to use it elsewhere, the data's sources and licences) filled in from the
    checkpoint, then what the checkpoint records about its training data; ``example`` is the validation example
    the API example names. Returns the API example's Markdown, which the page fills with its own address when it
    loads."""
    meta = loaded.metadata
    licences = EXAMPLES / "DATASETS.md"
    fields = {
        "preset": str(meta.get("preset", "?")).upper(),
        "parameters": f"{loaded.parameters / 1e6:.2f}",
        "num_classes": len(loaded.classes),
        "legend": legend_html(loaded),
        "checkpoint": shown_path(loaded.source),
        "dtype": meta.get("dtype", "?"),
        "code_version": code_version(meta.get("code_version")),
        "input_size": meta.get("input_size", "?"),
        "working_rule": working_rule(loaded),
        "mask_megapixels": f"{MASK_PIXELS / 1e6:.0f}",
        "jpeg_megapixels": f"{MAX_PIXELS / 1e6:.0f}",
        "other_megapixels": f"{MAX_OTHER_PIXELS / 1e6:g}",
        "datasets": licences.read_text() if licences.is_file() else "*examples/DATASETS.md is missing.*",
        "teaching": teacher_note(meta) or "",
    }
    # The API example (its own Markdown, filled with the page's address) stands on a line of its own.
    before, _, after = ABOUT.read_text().partition(f"{API_EXAMPLE}\n")
    gr.Markdown(Template(before).substitute(fields))
    code = gr.Markdown(api_example(page_address(None), example), elem_id="api-example")
    if after:
        gr.Markdown(Template(after).substitute(fields))
    data = meta.get("data")
    if data:
        gr.JSON(data, label="Training data (from the checkpoint)")
    else:
        gr.Markdown("*Not recorded in this checkpoint.*")
    return code


# ---------------------------------------------------------------------------- the page


def predict_examples(loaded: Segmenter, pairs: dict) -> dict[str, tuple[np.ndarray, float]]:
    """Each bundled validation example's mask and inference seconds (computed once, when the page is built)."""
    if loaded.classes != CLASS_NAMES:
        return {}
    return {name: segment(loaded, rgb)[:2] for name, (rgb, _) in pairs.items()}


def build_demo(loaded: Segmenter) -> gr.Blocks:
    """The whole page for one loaded model (the model is shared by all requests)."""
    cache = upload_cache()
    pairs = read_pairs(EXAMPLES / "validation")
    predictions = predict_examples(loaded, pairs)
    example = next(iter(pairs), "NAME")

    def own_api_example(request: gr.Request) -> str:
        """The API example for the page being loaded (its address as the browser reached it)."""
        return api_example(page_address(request), example)

    with gr.Blocks(title="SegFormer: plants, people/animals, vehicles", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            f"# SegFormer-{loaded.metadata.get('preset', '?').upper()}: "
            f"{', '.join(loaded.classes)}\nSemantic segmentation with SegFormer (Xie et al., NeurIPS 2021), "
            "built from the paper's parts. The About tab describes the model and the data it was trained on.",
            elem_id="title",
        )
        with gr.Tabs():
            with gr.Tab("Segment a photo"):
                segment_tab(loaded, cache)
            with gr.Tab("Live camera"):
                camera_tab(loaded)
            with gr.Tab("Validation examples"):
                validation_tab(loaded, pairs, predictions)
            with gr.Tab("Training curves"):
                curves_tab(loaded, pairs, predictions)
            with gr.Tab("Attention maps"):
                attention_tab(loaded, cache)
            with gr.Tab("Design questions"):
                discussion_tab()
            with gr.Tab("About"):
                code = about_tab(loaded, example)
        demo.load(own_api_example, None, code, api_visibility="private")
    return demo


def serve(
    demo: gr.Blocks,
    host: str | None = None,
    port: int | None = None,
    block: bool = True,
    mask_route: MaskRoute | None = None,
) -> None:
    """Queue (bounded, one model job at a time) and launch, with ``mask_route`` served at POST /mask beside the
    page; with ``block`` False, return once it serves. Every gradio call goes through the queue: gradio's direct
    routes (/gradio_api/run/NAME, which skip it and its limits) are closed, as they are on a Space."""
    demo.queue(default_concurrency_limit=2, max_size=QUEUE_SIZE, api_open=False)
    demo.launch(
        prevent_thread_lock=True,
        server_name=host,
        server_port=port,
        max_file_size=MAX_UPLOAD,
        allowed_paths=[str(EXAMPLES), str(DOCS)],
        state_session_capacity=PAGE_STATES_KEPT,
        css=CSS,
    )
    if mask_route is not None:
        demo.server_app.add_api_route(MASK_PATH, mask_route, methods=["POST"], include_in_schema=False)
    if block:
        demo.block_thread()


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: load the checkpoint (or stop with a message naming it), then serve."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--checkpoint",
        default=os.environ.get("SEGFORMER_CHECKPOINT", str(DEFAULT_CHECKPOINT)),
        help="checkpoint stem (NAME for NAME.safetensors + NAME.json) or hf://ORG/REPO/NAME "
        "(default: $SEGFORMER_CHECKPOINT, else %(default)s)",
    )
    parser.add_argument("--port", type=int, help="port (default: $GRADIO_SERVER_PORT, else 7860)")
    parser.add_argument("--host", help="address to listen on (default: $GRADIO_SERVER_NAME, else 127.0.0.1)")
    args = parser.parse_args(argv)
    keep_freed_memory()
    try:
        loaded = load_model(args.checkpoint)
    except CheckpointError as err:
        sys.exit(f"app.py: {err}")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    serve(build_demo(loaded), args.host, args.port, mask_route=MaskRoute(loaded, MAX_UPLOAD, MASK_PIXELS, MASK_SLOTS))


if __name__ == "__main__":
    main()
