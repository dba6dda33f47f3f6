"""SegFormer demo page: segment a photo, validation examples, training curves, attention maps, design questions, about.

    python app.py [--checkpoint PATH | hf://ORG/REPO/NAME] [--port N] [--host NAME]

The checkpoint defaults to $SEGFORMER_CHECKPOINT, else checkpoints/segformer-b0-4class beside this file. Port
and host default to gradio's GRADIO_SERVER_PORT (else 7860) and GRADIO_SERVER_NAME (else 127.0.0.1).
Importing this module starts nothing: main() loads the model once, then serves build_demo(model).
The computing lives in the demo package (one module per subject); this file is the page and its wiring. The Design
questions tab shows docs/DISCUSSION.md with its figures (served from docs/), and the About tab's text is
docs/about.md.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections import deque
from pathlib import Path
from string import Template

import gradio as gr
import matplotlib.pyplot as plt
import numpy as np

from demo.attention import ATTENTION_SIDE, attention_maps, heatmap, working_image
from demo.checkpoints import CheckpointError, LoadedModel, load_model
from demo.docs import read_page_markdown
from demo.ground_truth import (
    HATCH_COLOURS,
    disagreement,
    image_scores,
    partial_labels,
    read_pairs,
    truth_picture,
)
from demo.segment import DISPLAY_SIDE, class_shares, downscale, segment
from segformer.images import IGNORE_COLOUR, MAX_SIDE, InputError, blend, colourise, palette_png, read_image
from train.classes import CLASS_NAMES
from train.curves import history_figure

APP_DIR = Path(__file__).resolve().parent
DEFAULT_CHECKPOINT = APP_DIR / "checkpoints" / "segformer-b0-4class"
EXAMPLES = APP_DIR / "examples"
DOCS = APP_DIR / "docs"
ABOUT = DOCS / "about.md"
DISCUSSION = DOCS / "DISCUSSION.md"
#: Requests allowed to wait in the queue; beyond that a caller is told that the queue is full.
QUEUE_SIZE = 64
MAX_UPLOAD = "100mb"
#: Full-size masks kept on disk for download (older ones are deleted; gradio has copied them by then).
KEPT_MASKS = 32
MEAN_OF_HEADS, EACH_HEAD = "mean over heads", "each head"
#: Every event that runs the network shares one worker: two at once would only split the CPU between them.
MODEL_EVENTS = {"concurrency_id": "model", "concurrency_limit": 1}


def read_upload(payload: dict | None) -> np.ndarray | None:
    """The uploaded image (not preprocessed by gradio, so that decoding errors are ours) as RGB, or None."""
    if payload is None:
        return None
    if not payload.get("path"):
        raise gr.Error("The upload did not arrive as a file; please upload it again.")
    try:
        return read_image(payload["path"])
    except InputError as err:
        raise gr.Error(str(err), title="Cannot use this image") from err


def hex_colour(colour: list[int] | tuple[int, ...]) -> str:
    """'#rrggbb' of an RGB triple."""
    return "#" + "".join(f"{int(c):02x}" for c in colour)


def shown_path(source: str) -> str:
    """A checkpoint as the page names it: relative to the app's folder when inside it."""
    path = Path(source).resolve()
    return str(path.relative_to(APP_DIR)) if not source.startswith("hf://") and path.is_relative_to(APP_DIR) else source


def legend_html(loaded: LoadedModel, labels: bool = False) -> str:
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
    return " &nbsp; ".join(f"{swatch.format(background)} {name}" for name, background in items)


def photo_input(label: str, height: int, elem_id: str) -> gr.Image:
    """A photo from an upload, the webcam or the clipboard (kept as a file: the app decodes it), with the bundled
    example photos below it."""
    photo = gr.Image(
        type="filepath", sources=["upload", "webcam", "clipboard"], label=label, height=height, elem_id=elem_id
    )
    photos = sorted((EXAMPLES / "photos").glob("*.jpg"))
    gr.Examples([[str(p)] for p in photos], inputs=[photo], label="Example photos (validation images)")
    return photo


# ---------------------------------------------------------------------------- tab 1: segment a photo


def segment_tab(loaded: LoadedModel) -> None:
    """Upload/webcam/clipboard photo -> overlay with legend and opacity, class shares, timing, full-size mask."""
    masks = tempfile.TemporaryDirectory(prefix="segformer-app-masks-")  # removed when the process ends
    recent: deque[Path] = deque()

    def save_mask(mask: np.ndarray, upload_name: str | None) -> Path:
        """Write the mask as a palette PNG named after the upload, in a folder of its own."""
        folder = Path(masks.name) / uuid.uuid4().hex
        folder.mkdir()
        path = folder / f"{Path(upload_name or 'photo').stem}-mask.png"
        palette_png(mask, loaded.palette).save(path, compress_level=1)
        recent.append(folder)
        while len(recent) > KEPT_MASKS:
            shutil.rmtree(recent.popleft(), ignore_errors=True)
        return path

    def overlay(view: tuple[np.ndarray, np.ndarray] | None, opacity: float) -> np.ndarray | None:
        """The display-size photo blended with its class colours (one JPEG to send, however many classes)."""
        if view is None:
            return None
        rgb, mask = view
        return blend(rgb, mask, loaded.palette, opacity)

    def segment_photo(image: dict | None, opacity: float) -> tuple:
        """Overlay, class shares, timing text, full-size mask PNG, and the display-size view kept for recolouring."""
        start = time.perf_counter()
        rgb = read_upload(image)
        if rgb is None:
            return None, None, "", None, None
        mask, seconds, (work_w, work_h) = segment(loaded, rgb)
        shares = class_shares(mask, len(loaded.classes))
        view = downscale(rgb, mask, DISPLAY_SIDE)
        mask_path = save_mask(mask, image.get("orig_name"))
        height, width = mask.shape
        info = (
            f"Photo **{width}×{height}**; the network ran at {work_w}×{work_h} (longer side ≤ {MAX_SIDE}) "
            f"and its logits were upsampled to the full {width}×{height} before the argmax. "
            f"Inference **{seconds:.2f} s** (whole request {time.perf_counter() - start:.2f} s)."
        )
        table = {name: float(share) for name, share in zip(loaded.classes, shares, strict=True)}
        return overlay(view, opacity), table, info, str(mask_path), view

    with gr.Row():
        with gr.Column(scale=2):
            photo = photo_input("Photo", 400, "segment-photo")
            opacity = gr.Slider(0.0, 1.0, value=0.55, step=0.05, label="Overlay opacity")
        with gr.Column(scale=3):
            result = gr.Image(label="Segmentation", format="jpeg", height=400, interactive=False, elem_id="overlay")
            gr.HTML(legend_html(loaded), elem_id="overlay-legend")
            shares = gr.Label(label="Share of the image per class", show_heading=False)
            info = gr.Markdown()
            mask_file = gr.File(label="Mask at the photo's resolution (PNG; pixel value = class id)")
    view = gr.State()
    photo.change(
        segment_photo,
        [photo, opacity],
        [result, shares, info, mask_file, view],
        api_name="segment",
        preprocess=False,
        **MODEL_EVENTS,
    )
    opacity.change(overlay, [view, opacity], result, api_visibility="private", show_progress="hidden")


# ---------------------------------------------------------------------------- tab 2: validation examples


def validation_tab(loaded: LoadedModel) -> None:
    """Gallery of bundled validation images; one selected -> image | truth | prediction, IoU, disagreement map."""
    if loaded.classes != CLASS_NAMES:
        gr.Markdown(
            f"The bundled examples are labelled with the classes {', '.join(CLASS_NAMES)}; this checkpoint "
            f"predicts {', '.join(loaded.classes)}, so there is nothing to compare."
        )
        return
    folder = EXAMPLES / "validation"
    pairs = read_pairs(folder)
    names = list(pairs)

    def show_example(name: str | None) -> tuple:
        """Image, ground truth, prediction, disagreement map, IoU table and summary of one validation example."""
        if not name:
            return None, None, None, None, None, ""
        if name not in pairs:
            raise gr.Error(f"There is no validation example called {name!r}.")
        rgb, truth = pairs[name]
        prediction, seconds, _ = segment(loaded, rgb)
        result = image_scores(prediction, truth, loaded.classes)
        rows = [
            [cls, "—" if iou is None else f"{iou:.3f}", f"{truth_share:.1%}", f"{predicted_share:.1%}"]
            for (cls, iou), truth_share, predicted_share in zip(
                result["per_class_iou"].items(), result["truth_share"], result["predicted_share"], strict=True
            )
        ]
        source = name.split("__")[0]
        summary = (
            f"**{name}** ({source}, {rgb.shape[1]}×{rgb.shape[0]}): pixel accuracy **{result['pixel_acc']:.1%}**, "
            f"mIoU **{result['miou']:.3f}** over the classes present in truth or prediction "
            f"(— = absent from both). {result['ignored_share']:.0%} of the pixels are not labelled and not scored. "
        )
        if result["partial_share"]:
            summary += (
                f"{result['partial_share']:.0%} of the pixels have a partial label (hatched: "
                f"{', '.join(partial_labels(truth, source))}): left out of IoU and pixel accuracy, and "
                f"{result['outside_admissible']:.1%} of them are predicted as a class outside their set. "
            )
        summary += f"Inference {seconds:.2f} s."
        return (
            rgb,
            truth_picture(truth, loaded.palette),
            colourise(prediction, loaded.palette),
            disagreement(rgb, prediction, truth),
            rows,
            summary,
        )

    gr.Markdown(
        f"{len(names)} validation images bundled with the app (a few from each source, labels mapped to the "
        "4 classes, short side ≤ 256 px). Pick one to compare the model with the ground truth. Where a source "
        "labels a pixel only as one of a few classes (a partial label, hatched), a prediction is wrong only "
        "outside that set."
    )
    gallery = gr.Gallery(
        [(str(folder / "images" / "val" / f"{name}.jpg"), name.replace("__", ": ")) for name in names],
        columns=8,
        height=470,
        allow_preview=False,
        label="Validation examples",
        elem_id="validation-gallery",
    )
    choice = gr.Dropdown(names, value=None, label="Validation example")
    gr.HTML(legend_html(loaded, labels=True))
    with gr.Row(elem_id="validation-panels"):
        image_out = gr.Image(label="Image", interactive=False)
        truth_out = gr.Image(label="Ground truth", interactive=False)
        prediction_out = gr.Image(label="Prediction", interactive=False)
    with gr.Row():
        wrong_out = gr.Image(
            label="Disagreement (yellow: prediction ≠ truth, or outside a partial label's set; white: not labelled)",
            interactive=False,
        )
        with gr.Column():
            summary_out = gr.Markdown()
            table_out = gr.Dataframe(
                headers=["class", "IoU", "truth share", "predicted share"], label="This image, per class"
            )

    def pick(evt: gr.SelectData) -> str:
        return names[evt.index]

    gallery.select(pick, None, choice, api_visibility="private")
    choice.change(
        show_example,
        choice,
        [image_out, truth_out, prediction_out, wrong_out, table_out, summary_out],
        api_name="validation_example",
        **MODEL_EVENTS,
    )


# ---------------------------------------------------------------------------- tab 3: training curves


def curves_tab(loaded: LoadedModel) -> None:
    """Loss and IoU per epoch from the checkpoint's history, the final and best figures, and the recipe."""
    history = loaded.metadata.get("history") or []
    if history:
        last = history[-1]
        best = max(history, key=lambda record: record["val_miou"])
        gr.Markdown(
            f"After epoch **{last['epoch']}**: validation mIoU **{last['val_miou']:.3f}**, pixel accuracy "
            f"**{last['val_pixel_acc']:.1%}**, validation loss {last['val_loss']:.3f} (train loss "
            f"{last['train_loss']:.3f}). Best validation mIoU {best['val_miou']:.3f} at epoch {best['epoch']}."
        )
        soup = loaded.metadata.get("soup")
        if soup:
            parts = ", ".join(
                f"`{part['checkpoint']}` (epoch {part['history'][-1]['epoch']}, validation mIoU "
                f"{part['history'][-1]['val_miou']:.3f})"
                for part in soup
                if part["history"]
            )
            gr.Markdown(
                f"These weights are the **average of {len(soup)} checkpoints** (a uniform model soup, "
                f"`train/soup.py`): {parts}. The curves and figures on this tab are those of the first."
            )
        figure = history_figure(history)
        gr.Plot(figure, label="Training curves", elem_id="curves")
        plt.close(figure)
        gr.Dataframe(
            [[name, "—" if iou is None else f"{iou:.3f}"] for name, iou in last["val_per_class_iou"].items()],
            headers=["class", f"validation IoU after epoch {last['epoch']}"],
        )
    else:
        gr.Markdown(
            "This checkpoint has **no training history** (it was not written by `train/train.py`), "
            "so there are no curves to show.",
            elem_id="curves",
        )
    recipe = loaded.metadata.get("recipe")
    if recipe:
        gr.JSON(recipe, label="Recipe (training arguments)")


# ---------------------------------------------------------------------------- tab 4: attention maps


def attention_tab(loaded: LoadedModel) -> None:
    """Click a point of a photo: where that query token attends in the last block of each of the 4 stages."""

    def attend(image: dict | None, x: float | None, y: float | None, heads: str) -> tuple:
        """Attention pictures with captions, and the text saying which point and sizes they are for."""
        rgb = read_upload(image)
        if rgb is None:
            return None, ""
        height, width = rgb.shape[:2]
        work = working_image(rgb, ATTENTION_SIDE)
        work_h, work_w = work.shape[:2]
        centre = x is None or y is None
        px = width / 2 if centre else min(max(float(x), 0.0), width - 1.0)
        py = height / 2 if centre else min(max(float(y), 0.0), height - 1.0)
        point = (px * work_w / width, py * work_h / height)
        items = []
        rows = [
            "| stage | block shown | query grid h×w | key grid ⌊h/R⌋×⌊w/R⌋ | reduction R | heads |",
            "|---" * 6 + "|",
        ]
        for stage in attention_maps(loaded, work, point):
            count = stage.maps.shape[0]
            rows.append(
                f"| {stage.stage} | last ({stage.block} of {stage.block}) | {stage.grid[0]}×{stage.grid[1]} | "
                f"{stage.keys[0]}×{stage.keys[1]} | {stage.sr_ratio} | {count} |"
            )
            for head in [None] if heads != EACH_HEAD else range(count):
                who = f"head {head + 1} of {count}" if head is not None else f"mean of {count} heads"
                who = "its only head" if count == 1 else who
                caption = (
                    f"Stage {stage.stage}, last block ({stage.block} of {stage.block}), {who}: "
                    f"{stage.grid[0]}×{stage.grid[1]} queries attend to {stage.keys[0]}×{stage.keys[1]} keys "
                    f"(reduction ratio {stage.sr_ratio})"
                )
                items.append((heatmap(work, stage, head, point), caption))
        where = "the centre (click the photo to pick a point)" if centre else f"({px:.0f}, {py:.0f})"
        info = (
            f"Query point: {where} of the {width}×{height} photo, computed at {work_w}×{work_h}. Each map is "
            "the softmax attention of the stage's **last block** for the query token under the point (cyan "
            "square: that token's cell), upsampled from the stage's reduced key grid and scaled to its maximum.\n\n"
            + "\n".join(rows)
        )
        return items, info

    def clicked(evt: gr.SelectData) -> tuple[float, float]:
        return evt.index[0], evt.index[1]

    gr.Markdown(
        "Pick a photo and click a point on it. SegFormer's efficient self-attention compares each query token "
        "with keys reduced by a ratio R (8, 4, 2, 1 in stages 1–4), so each stage attends over a coarser grid."
    )
    with gr.Row():
        with gr.Column(scale=2):
            photo = photo_input("Photo (click a point)", 380, "attention-photo")
            with gr.Row():
                x = gr.Number(label="Query x (pixels; empty = centre)", precision=0)
                y = gr.Number(label="Query y (pixels; empty = centre)", precision=0)
            heads = gr.Radio([MEAN_OF_HEADS, EACH_HEAD], value=MEAN_OF_HEADS, label="Heads")
            show = gr.Button("Show attention", variant="primary")
        with gr.Column(scale=3):
            maps = gr.Gallery(
                label="Attention of the query (last block of each stage)",
                columns=2,
                height=640,
                object_fit="contain",
                elem_id="attention-maps",
            )
            info = gr.Markdown(elem_id="attention-info")
    inputs, outputs = [photo, x, y, heads], [maps, info]
    gr.on(
        [show.click, heads.change],
        attend,
        inputs,
        outputs,
        api_name="attention",
        preprocess=False,
        **MODEL_EVENTS,
    )
    photo.change(lambda: (None, None), None, [x, y], api_visibility="private").then(
        attend, inputs, outputs, api_visibility="private", preprocess=False, **MODEL_EVENTS
    )
    photo.select(clicked, None, [x, y], api_visibility="private").then(
        attend, inputs, outputs, api_visibility="private", preprocess=False, **MODEL_EVENTS
    )


# ---------------------------------------------------------------------------- tab 5: design questions


def discussion_tab() -> None:
    """docs/DISCUSSION.md, the design questions answered with measurements, with its figures (read at start)."""
    gr.Markdown(read_page_markdown(DISCUSSION), elem_id="discussion")


# ---------------------------------------------------------------------------- tab 6: about


def about_tab(loaded: LoadedModel) -> None:
    """docs/about.md (the model, how to use it elsewhere, the data's sources and licences) filled in from the
    checkpoint, then what the checkpoint records about its training data."""
    meta = loaded.metadata
    licences = EXAMPLES / "DATASETS.md"
    text = Template(ABOUT.read_text()).substitute(
        preset=str(meta.get("preset", "?")).upper(),
        parameters=f"{loaded.parameters / 1e6:.2f}",
        num_classes=len(loaded.classes),
        legend=legend_html(loaded),
        checkpoint=shown_path(loaded.source),
        dtype=meta.get("dtype", "?"),
        code_version=meta.get("code_version", "?"),
        input_size=meta.get("input_size", "?"),
        max_side=MAX_SIDE,
        datasets=licences.read_text() if licences.is_file() else "*examples/DATASETS.md is missing.*",
    )
    gr.Markdown(text)
    data = meta.get("data")
    if data:
        gr.JSON(data, label="Training data (from the checkpoint)")
    else:
        gr.Markdown("*Not recorded in this checkpoint.*")


# ---------------------------------------------------------------------------- the page


def build_demo(loaded: LoadedModel) -> gr.Blocks:
    """The whole page for one loaded model (the model is shared by all requests)."""
    with gr.Blocks(title="SegFormer: plants, people/animals, vehicles", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            f"# SegFormer-{loaded.metadata.get('preset', '?').upper()}: "
            f"{', '.join(loaded.classes)}\nSemantic segmentation with SegFormer (Xie et al., NeurIPS 2021), "
            "built from the paper's parts. The About tab describes the model and the data it was trained on."
        )
        with gr.Tabs():
            with gr.Tab("Segment a photo"):
                segment_tab(loaded)
            with gr.Tab("Validation examples"):
                validation_tab(loaded)
            with gr.Tab("Training curves"):
                curves_tab(loaded)
            with gr.Tab("Attention maps"):
                attention_tab(loaded)
            with gr.Tab("Design questions"):
                discussion_tab()
            with gr.Tab("About"):
                about_tab(loaded)
    return demo


def serve(demo: gr.Blocks, host: str | None = None, port: int | None = None) -> None:
    """Queue (bounded, one model job at a time) and launch."""
    demo.queue(default_concurrency_limit=2, max_size=QUEUE_SIZE)
    demo.launch(
        server_name=host,
        server_port=port,
        max_file_size=MAX_UPLOAD,
        allowed_paths=[str(EXAMPLES), str(DOCS)],
    )


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
    try:
        loaded = load_model(args.checkpoint)
    except CheckpointError as err:
        sys.exit(f"app.py: {err}")
    serve(build_demo(loaded), args.host, args.port)


if __name__ == "__main__":
    main()
