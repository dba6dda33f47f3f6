"""The tables of bench/README.md, written from the benchmarks' JSON files in bench/results/ rather than retyped.

    python -m bench.tables [NAME ...]

prints, for each named file (default: every one of ``TABLES``), the line that links it and says how it was made
(the command, the runs, the threads, the machine and its load average), then its Markdown table: the text its
section of bench/README.md shows, which tests/test_bench_readme.py checks against the file figure by figure.
"""

import argparse
import json
import re
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
#: The width the lines of prose are wrapped to, as the rest of bench/README.md.
WIDTH = 116


def seconds(value: float) -> str:
    """Seconds to three decimals below one, three significant figures from one up."""
    digits = 3 if value < 1 else max(0, 3 - len(str(int(value))))
    return f"{value:.{digits}f}"


def wrap(text: str) -> str:
    """``text`` wrapped to ``WIDTH``, never inside a word or at a hyphen (a flag such as ``--runs`` stays whole)."""
    return textwrap.fill(text, WIDTH, break_long_words=False, break_on_hyphens=False)


def markdown(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, as the rest of bench/README.md writes one."""
    lines = ["|" + "|".join(f" {cell} " if cell else " " for cell in cells) + "|" for cells in [header, *rows]]
    lines.insert(1, "|" + "---|" * len(header))
    return "\n".join(lines)


#: How bench_model shows a figure of each metric.
MODEL_FIGURES: dict[str, Callable[[float], str]] = {
    "latency_s": lambda value: f"{seconds(value)} s",
    "peak_memory_mib": lambda value: f"{value:.0f} MiB",
    "images_per_s": lambda value: f"{value:.1f}",
}


def model_label(case: dict[str, Any]) -> str:
    """The row label of one bench_model case ("b0 384x512 eval", "b0 train batch 8 256x256") and metric."""
    size = re.search(r"\d+x\d+", case["case"])[0]
    if case["metric"] == "latency_s":
        return f"B0 {size}, latency (median of {case['runs']})"
    if case["metric"] == "peak_memory_mib":
        return f"B0 {size}, peak memory"
    batch = re.search(r"batch (\d+)", case["case"])[1]
    return f"B0 training, batch {batch} of {size}, images/s"


def model_table(data: dict[str, Any]) -> str:
    """bench_model's transformers comparison: one row per case, onnxruntime where it was timed (latency)."""
    rows = []
    for case in data["cases"]:
        figure = MODEL_FIGURES[case["metric"]]
        runtime, runtime_ratio = case.get("onnxruntime"), case.get("ratio_onnxruntime")
        rows.append(
            [
                model_label(case),
                figure(case["ours"]),
                "-" if runtime is None else figure(runtime),
                figure(case["transformers"]),
                "-" if runtime_ratio is None else f"{runtime_ratio:.2f}",
                f"{case['ratio']:.2f}",
                case["goal"] or "-",
            ]
        )
    header = ["case", "this model", "onnxruntime", "transformers", "ours / onnxruntime", "ours / transformers", "goal"]
    return markdown(header, rows)


def app_table(data: dict[str, Any]) -> str:
    """bench_app: the bare model's p50 and p95, then each way of calling the app with its ratio to the bare median
    (the goal on the plain HTTP request's and the route's)."""
    rows = [["bare model", f"{seconds(data['bare_predict_p50_s'])} s", f"{seconds(data['bare_predict_p95_s'])} s", "-"]]
    calls = (
        ("http_request", "`/segment` over plain HTTP"),
        ("mask_route", "`POST /mask` (the mask alone)"),
        ("gradio_client", "`/segment` via gradio_client"),
    )
    for key, label in calls:
        rows.append(
            [
                label,
                f"{seconds(data[f'{key}_p50_s'])} s",
                f"{seconds(data[f'{key}_p95_s'])} s",
                f"{data[f'ratio_{key}_over_bare']:.2f}",
            ]
        )
    goal = data["goal"].rpartition(" ")[2]
    return markdown([data["photo"], "p50", "p95", f"p50 / bare model (goal, over HTTP and the route: <= {goal})"], rows)


def app_large_table(data: dict[str, Any]) -> str:
    """bench_app_large: the peer and each largest image, then the concurrent clients in one sentence."""
    peer = data["peer"]
    rows = [[f"{peer['image']} (peer)", "", seconds(peer["seconds_p50"]), "1.00", ""]]
    for name in ("largest JPEG", "largest PNG"):
        case = data[name]
        rows.append(
            [
                f"{case['image']}, {case['file_mb']} MB",
                f"{case['peak_rss_above_rest_mb_p50']} MB (max {case['peak_rss_above_rest_mb_max']})",
                f"{seconds(case['seconds_p50'])} ({seconds(case['server_seconds_p50'])})",
                f"{case['ratio_to_peer']:.2f}",
                f"{seconds(case['peer_queued_behind_it_s_p50'])} s"
                f" (max {seconds(case['peer_queued_behind_it_s_max'])})",
            ]
        )
    header = ["image", "peak RSS above rest", "seconds (server)", "ratio to the peer", "peer queued behind it"]
    clients = data["concurrent_clients"]
    sentence = (
        f"{clients['clients']} clients at once: {clients['served_with_full_size_masks']} answered with their full-size"
        f" masks, the slowest in {clients['slowest_s']} s (median {clients['median_s']} s)."
    )
    return f"{markdown(header, rows)}\n\n{wrap(sentence)}"


def teacher_table(data: dict[str, Any]) -> str:
    """bench_teacher: seconds a photo of the student and of the teacher, and their ratio."""
    per_photo = data["seconds_per_photo"]
    rows = [
        [
            f"student, {data['checkpoint']}, short side {data['student_working_short_side']}",
            seconds(per_photo["student"]),
            "",
        ],
        [
            "ADE20K teacher, DeepLabV3 513x513",
            seconds(per_photo["ade20k_teacher"]),
            f"{data['teacher_over_student']:.2f}",
        ],
    ]
    return markdown(["model", "seconds a photo", f"teacher / student (goal {data['goal']})"], rows)


def camera_table(data: dict[str, Any]) -> str:
    """bench_camera: the camera's frame against the bare forward at its working size and at the photo tab's; served,
    a photo alone and while a stream runs, and the stream's frames as the server timed them; then the frames per
    second and the masks' agreement in one sentence."""

    def row(label: str, timed: dict[str, float], ratio: str) -> list[str]:
        return [label, f"{seconds(timed['p50_s'])} s", f"{seconds(timed['p95_s'])} s", ratio]

    stream, served = data["stream_working_size"], data["served"]
    alone, with_stream = served["photo_alone"], served["photo_with_stream"]
    local = [
        row(
            f"camera frame: decoding, network at {stream}, overlay, shares",
            data["camera_frame"],
            f"{data['ratio_frame_over_bare_forward']:.2f}",
        ),
        row(f"bare forward at {stream} (peer)", data["bare_forward"], "1.00"),
        row(
            f"bare forward at {data['photo_working_size']}, the photo tab's scale",
            data["bare_forward_photo_scale"],
            f"{data['ratio_photo_scale_over_bare_forward']:.2f}",
        ),
    ]
    remote = [
        row(f"photo {served['photo']} alone (peer), {alone['count']} requests", alone, "1.00"),
        row(
            f"photo while one stream runs, {with_stream['count']} requests",
            with_stream,
            f"{served['ratio_photo_with_stream_over_alone']:.2f}",
        ),
        row("a stream's frame, as the server timed it", served["server_seconds_per_frame"], ""),
    ]
    sentence = (
        f"In this process, {data['frames_per_s']:.2f} frames a second. Served, the stream sent a frame every"
        f" {served['stream_every_s']:g} s for {served['stream_s']:g} s ({served['frames_sent']} frames) and got"
        f" {served['overlays']} overlays back, {served['overlays_per_s']:.2f} a second. The stream's masks agree with"
        f" the photo tab's scale on {data['mask_agreement_with_photo_scale']:.1%} of the pixels."
    )
    video = f"{data['frames']} frames of {data['video']}, {data['frame_size']}"
    tables = [
        markdown([video, "p50", "p95", "ratio to the bare forward"], local),
        markdown(["served (`python app.py`)", "p50", "p95", "ratio to the photo alone"], remote),
    ]
    return "\n\n".join([*tables, wrap(sentence)])


def corruptions_table(data: dict[str, Any]) -> str:
    """bench_corruptions: per corruption the page offers, the seconds of a request on the largest JPEG and PNG the
    app accepts, end to end (the server's own part in brackets), against the clean request; then the slowest."""
    photos = data["photos"]
    names = list(next(iter(photos.values()))["cases"])

    def cell(case: dict[str, float]) -> str:
        return f"{seconds(case['seconds_p50'])} ({seconds(case['server_seconds_p50'])}) ×{case['ratio_to_clean']:.2f}"

    rows = [[name, *(cell(photo["cases"][name]) for photo in photos.values())] for name in names]
    slowest = "; ".join(
        f"{name}: {photo['slowest']}, {seconds(photo['cases'][photo['slowest']]['seconds_p50'])} s"
        f" ({'within' if photo['meets_goal'] else 'over'} the {data['goal_s']:g} s bound)"
        for name, photo in photos.items()
    )
    header = [f"corruption, severity {data['severity']}", *(f"{name}: s (server) ×clean" for name in photos)]
    return f"{markdown(header, rows)}\n\n{wrap(f'Slowest: {slowest}.')}"


def profile_table(data: dict[str, Any]) -> str:
    """profile_model: the forward's parts (ms a forward on each side, and their ratio); each side's operator kinds by
    time (ms a forward, share of its operators' total), side by side; each side's wall time against its operators'
    sum in one sentence."""
    parts = [
        [
            part["part"],
            f"{part['this_model_ms']:.1f}",
            f"{part['onnxruntime_ms']:.1f}",
            f"{part['this_model_ms'] / part['onnxruntime_ms']:.2f}",
        ]
        for part in data["parts"]
    ]
    parts_header = ["part of the forward", "this model, ms", "onnxruntime, ms", "ours / onnxruntime"]
    ours, theirs = data["this_model_ops"], data["onnxruntime_ops"]
    rows = []
    for index in range(max(len(ours), len(theirs))):
        row = []
        for ops in (ours, theirs):
            op = ops[index] if index < len(ops) else None
            row += ["", "", ""] if op is None else [f"`{op['op']}`", f"{op['ms']:.1f}", f"{op['share']:.0%}"]
        rows.append(row)
    header = ["this model: aten operator", "ms", "share", "onnxruntime: op type", "ms", "share"]
    sides = ((name, data[key]) for name, key in (("This model", "this_model"), ("onnxruntime", "onnxruntime")))
    sentence = " ".join(
        f"{name}: {side['wall_ms']:.1f} ms a forward at {data['size'][0]}x{data['size'][1]} without the profiler,"
        f" {side['operators_ms']:.1f} ms in its operators."
        for name, side in sides
    )
    return f"{markdown(parts_header, parts)}\n\n{markdown(header, rows)}\n\n{wrap(sentence)}"


#: The table of each result file in bench/results/, by file name.
TABLES: dict[str, Callable[[dict[str, Any]], str]] = {
    "bench-model-2threads.json": model_table,
    "bench-model-1thread.json": model_table,
    "bench-app.json": app_table,
    "bench-app-large.json": app_large_table,
    "bench-teacher.json": teacher_table,
    "bench-camera.json": camera_table,
    "bench-corruptions.json": corruptions_table,
    "profile-384x512-2threads.json": profile_table,
}


def counted(count: int, noun: str) -> str:
    """``count`` and ``noun``, plural unless one: "1 run", "2 runs"."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def made_by(name: str, data: dict[str, Any]) -> str:
    """The line that links the file ``name`` (from bench/README.md) and says what made it, where and under what load."""
    threads = counted(data["threads"], "thread")
    if data["omp_num_threads"] is not None:
        threads += f" (OMP_NUM_THREADS={data['omp_num_threads']})"
    load = ", ".join(f"{value:.2f}" for value in data["load_average"])
    runs = counted(data["runs"], "run")
    return wrap(
        f"[results/{name}](results/{name}), made by `{data['command']}`: {runs}, {threads}, torch"
        f" {data['torch']}, {data['cpu']} ({data['cpu_count']} cores), load average {load} (1, 5, 15 minutes) at"
        " its end:"
    )


def block(name: str) -> str:
    """The text that shows the result file ``name`` in bench/README.md: the line that links it, then its table."""
    data = json.loads((RESULTS / name).read_text())
    return f"{made_by(name, data)}\n\n{TABLES[name](data)}"


def main(argv: list[str] | None = None) -> None:
    """Print the block of each named result file."""
    parser = argparse.ArgumentParser(prog="python -m bench.tables", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"result files (default: all): {', '.join(TABLES)}")
    names = parser.parse_args(argv).names or list(TABLES)
    if unknown := [name for name in names if name not in TABLES]:
        parser.error(f"no table for {', '.join(unknown)}")
    print("\n\n".join(block(name) for name in names))


if __name__ == "__main__":
    main()
