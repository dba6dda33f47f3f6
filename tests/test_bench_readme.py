"""bench/README.md against the committed results: a table is the JSON file its section links, figure by figure,
and a section whose run left no JSON says so rather than passing its figures off as a result."""

import json
import re
from collections.abc import Callable
from pathlib import Path

from bench.tables import TABLES, block

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "bench" / "README.md"
#: What a section says when its figures are one run's printout with no JSON committed.
NOT_RECORDED = "no committed record"


def sections() -> dict[str, str]:
    """The README's text under each "## " heading, by heading."""
    parts = re.split(r"^## (.+)$", README.read_text(), flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the Markdown tables in ``text`` (header and separator rows left out), as stripped cells."""
    lines = [line.strip() for line in text.splitlines() if line.startswith("|")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    separators = {i for i, row in enumerate(rows) if all(set(cell) <= set("-:") for cell in row)}
    return [row for i, row in enumerate(rows) if i not in separators and i + 1 not in separators]


def linked_json(text: str) -> list[Path]:
    """The JSON files that ``text`` links (Markdown links, relative to bench/)."""
    return [(README.parent / target).resolve() for target in re.findall(r"\]\(([^)\s]+\.json)\)", text)]


def agrees(shown: str, value: float, unit: float = 1.0) -> bool:
    """Whether the figure ``shown`` (a decimal string, in ``unit``s of ``value``) is ``value`` rounded to its digits."""
    decimals = len(shown.partition(".")[2])
    return abs(float(shown) * unit - value) <= (0.5 * 10.0**-decimals + 1e-9) * unit


def agrees_mib(shown: str, mib: float) -> bool:
    """Whether a size cell ("16 MiB", "0.97 GiB") is ``mib`` MiB, rounded to its digits."""
    number, unit = shown.split()
    return agrees(number, mib, {"MiB": 1.0, "GiB": 1024.0}[unit])


def check_attention_cost(rows: list[list[str]], data: dict, text: str) -> None:
    """The attention-cost table (bench_model --sr-sweep): one row per case of the JSON, in its order, each cell the
    case's figure; the section names the run's threads, runs and memory cap."""
    assert f"--threads {data['threads']} --runs {data['runs']}" in text
    assert len(rows) == len(data["cases"])
    for row, case in zip(rows, data["cases"], strict=True):
        sr, size, stage1, maps, latency, forward, with_maps = row
        assert re.findall(r"\d+", sr) == [str(r) for r in case["sr_ratios"]], row
        assert size == "x".join(map(str, case["size"])), row
        assert agrees_mib(stage1, case["stage1_attention_mib"]) and agrees_mib(maps, case["attention_maps_mib"]), row
        seconds, ratio = re.fullmatch(r"([\d.]+) s \(([\d.]+)\)", latency).groups()
        assert agrees(seconds, case["forward"]["latency_s"]) and agrees(ratio, case["forward"]["latency_ratio"]), row
        assert agrees_mib(forward, case["forward"]["peak_memory_mib"]), row
        kept = case["attention_maps"]
        if kept["status"] == "ok":
            peak, ratio = re.fullmatch(r"(\d+ MiB) \(([\d.]+)\)", with_maps).groups()
            assert agrees_mib(peak, kept["peak_memory_mib"]) and agrees(ratio, kept["peak_memory_ratio"]), row
        else:
            assert kept["status"] == "out_of_memory", row
            assert with_maps == f"**out of memory** under the {data['memory_cap_gib']:g} GiB cap", row


def agrees_unit(shown: str, value: float | None, unit: str) -> bool:
    """Whether a cell ("0.093 s", "363 MiB", "12.8") is ``value`` in ``unit`` rounded to its digits, or "-" for None."""
    if value is None:
        return shown == "-"
    return shown.endswith(unit) and agrees(shown.removesuffix(unit).strip(), value)


def check_made_by(data: dict, text: str) -> None:
    """The section gives the command that made the file, its runs and the load average it recorded."""
    text = " ".join(text.split())  # lines joined: a long command wraps
    assert f"`{data['command']}`: {data['runs']} run" in text
    loads = re.search(r"load average ([\d.]+), ([\d.]+), ([\d.]+)", text).groups()
    assert all(agrees(shown, load) for shown, load in zip(loads, data["load_average"], strict=True)), loads


def check_bench_model(rows: list[list[str]], data: dict, text: str) -> None:
    """The transformers comparison (bench_model): one row per case of the JSON, in its order, naming the case's
    metric and size; each figure the case's ("-" where it has none: onnxruntime times only latency), the ratios and
    the goal too."""
    check_made_by(data, text)
    assert len(rows) == len(data["cases"])
    metrics = {"latency_s": ("latency", " s"), "peak_memory_mib": ("peak memory", " MiB"), "images_per_s": ("/s", "")}
    for row, case in zip(rows, data["cases"], strict=True):
        label, ours, runtime, theirs, runtime_ratio, ratio, goal = row
        name, unit = metrics[case["metric"]]
        assert name in label and re.search(r"\d+x\d+", case["case"])[0] in label, row
        assert agrees_unit(ours, case["ours"], unit) and agrees_unit(theirs, case["transformers"], unit), row
        assert agrees_unit(runtime, case.get("onnxruntime"), unit), row
        assert agrees_unit(runtime_ratio, case.get("ratio_onnxruntime"), "") and agrees(ratio, case["ratio"]), row
        assert goal == (case["goal"] or "-"), row


def check_bench_app(rows: list[list[str]], data: dict, text: str) -> None:
    """The app against the bare model (bench_app): the bare model's p50 and p95, then /segment's over plain HTTP,
    POST /mask's and /segment's via gradio_client, each with its ratio to the bare median; the goal in the header."""
    check_made_by(data, text)
    bare, http, route, client = rows
    assert bare[0] == "bare model" and "HTTP" in http[0] and "/mask" in route[0] and "gradio_client" in client[0]
    keys = (bare, "bare_predict"), (http, "http_request"), (route, "mask_route"), (client, "gradio_client")
    for (_, p50, p95, ratio), key in keys:
        assert agrees_unit(p50, data[f"{key}_p50_s"], " s") and agrees_unit(p95, data[f"{key}_p95_s"], " s"), rows
        assert ratio == "-" if key == "bare_predict" else agrees(ratio, data[f"ratio_{key}_over_bare"]), rows
    header = re.search(r"^\| 1024x768 JPEG \|.*$", text, re.MULTILINE)[0]
    assert f"<= {data['goal'].rpartition(' ')[2]})" in header, header


def check_bench_app_large(rows: list[list[str]], data: dict, text: str) -> None:
    """The largest images (bench_app_large): the peer's seconds, then per largest image its size and file, its peak
    memory (median and max), seconds end to end and the server's, ratio to the peer, and the peer's wait behind it;
    and the sentence on the concurrent clients."""
    check_made_by(data, text)
    peer, *large = rows
    assert peer[0] == f"{data['peer']['image']} (peer)" and agrees(peer[2], data["peer"]["seconds_p50"]), peer
    assert len(large) == 2
    for row, case in zip(large, (data["largest JPEG"], data["largest PNG"]), strict=True):
        image, peak, seconds, ratio, queued = row
        assert image == f"{case['image']}, {case['file_mb']} MB", row
        peak_p50, peak_max = re.fullmatch(r"(\d+) MB \(max (\d+)\)", peak).groups()
        assert agrees(peak_p50, case["peak_rss_above_rest_mb_p50"]), row
        assert agrees(peak_max, case["peak_rss_above_rest_mb_max"]), row
        end_to_end, server = re.fullmatch(r"([\d.]+) \(([\d.]+)\)", seconds).groups()
        assert agrees(end_to_end, case["seconds_p50"]) and agrees(server, case["server_seconds_p50"]), row
        assert agrees(ratio, case["ratio_to_peer"]), row
        queued_p50, queued_max = re.fullmatch(r"([\d.]+) s \(max ([\d.]+)\)", queued).groups()
        assert agrees(queued_p50, case["peer_queued_behind_it_s_p50"]), row
        assert agrees(queued_max, case["peer_queued_behind_it_s_max"]), row
    clients = data["concurrent_clients"]
    pattern = r"(\d+) clients at once: (\d+) answered .* slowest in ([\d.]+) s \(median ([\d.]+) s\)"
    sentence = re.search(pattern, " ".join(text.split()))
    assert sentence and sentence.group(1, 2) == (str(clients["clients"]), str(clients["served_with_full_size_masks"]))
    assert agrees(sentence[3], clients["slowest_s"]) and agrees(sentence[4], clients["median_s"]), sentence


def check_bench_teacher(rows: list[list[str]], data: dict, text: str) -> None:
    """The student against the ADE20K teacher (bench_teacher): seconds a photo of each, the teacher's over the
    student's, and the checkpoint and working size the student ran at."""
    check_made_by(data, text)
    student, teacher = rows
    assert data["checkpoint"] in student[0] and f"short side {data['student_working_short_side']}" in student[0]
    assert agrees(student[1], data["seconds_per_photo"]["student"]) and student[2] == "", student
    assert "teacher" in teacher[0] and agrees(teacher[1], data["seconds_per_photo"]["ade20k_teacher"]), teacher
    assert agrees(teacher[2], data["teacher_over_student"]), teacher


def check_bench_camera(rows: list[list[str]], data: dict, text: str) -> None:
    """The live camera (bench_camera): in this process the camera's frame, its peer the bare forward at the stream's
    working size, and the bare forward at the photo tab's, each p50, p95 and ratio to the peer; served, the photo
    alone (the peer), the photo while a stream runs, and a stream's frame; the sentence's frames per second, overlays
    and agreement."""
    check_made_by(data, text)
    served = data["served"]
    cases = [
        (data["stream_working_size"], data["camera_frame"], data["ratio_frame_over_bare_forward"]),
        ("(peer)", data["bare_forward"], 1.0),
        (data["photo_working_size"], data["bare_forward_photo_scale"], data["ratio_photo_scale_over_bare_forward"]),
        ("alone (peer)", served["photo_alone"], 1.0),
        ("while one stream runs", served["photo_with_stream"], served["ratio_photo_with_stream_over_alone"]),
        ("stream's frame", served["server_seconds_per_frame"], None),
    ]
    assert len(rows) == len(cases), rows
    for (label, p50, p95, ratio), (name, timed, expected) in zip(rows, cases, strict=True):
        assert name in label, (label, name)
        assert agrees_unit(p50, timed["p50_s"], " s") and agrees_unit(p95, timed["p95_s"], " s"), label
        assert (ratio == "") if expected is None else agrees(ratio, expected), label
    sentence = " ".join(text.split())
    figures = re.search(
        r"([\d.]+) frames a second\. .* \((\d+) frames\) and got (\d+) overlays back, ([\d.]+) a second\..* on"
        r" ([\d.]+)% of the pixels",
        sentence,
    )
    assert figures, sentence
    assert agrees(figures[1], data["frames_per_s"]) and agrees(figures[4], served["overlays_per_s"]), figures
    assert (int(figures[2]), int(figures[3])) == (served["frames_sent"], served["overlays"]), figures
    assert agrees(figures[5], data["mask_agreement_with_photo_scale"], 0.01), figures


#: How each committed result is checked against its table, by file name.
def check_bench_corruptions(rows: list[list[str]], data: dict, text: str) -> None:
    """The corruption control's cost (bench_corruptions): one row per case of the JSON ("none" the clean peer), each
    photo's seconds end to end, the server's part and the ratio to the clean request; the slowest named, with whether
    it keeps the bound."""
    check_made_by(data, text)
    photos = list(data["photos"].values())
    assert [row[0] for row in rows] == list(photos[0]["cases"])
    for row in rows:
        for shown, photo in zip(row[1:], photos, strict=True):
            case = photo["cases"][row[0]]
            total, server, ratio = re.fullmatch(r"([\d.]+) \(([\d.]+)\) ×([\d.]+)", shown).groups()
            assert agrees(total, case["seconds_p50"]) and agrees(server, case["server_seconds_p50"]), row
            assert agrees(ratio, case["ratio_to_clean"]), row
    text = " ".join(text.split())  # lines joined: the sentence wraps
    for name, photo in data["photos"].items():
        verdict = "within" if photo["meets_goal"] else "over"
        assert f"{name}: {photo['slowest']}," in text and f"({verdict} the {data['goal_s']:g} s bound)" in text


def check_profile(rows: list[list[str]], data: dict, text: str) -> None:
    """Where the forward's time goes (profile_model): first a row per part of the forward, its milliseconds on each
    side and their ratio; then each row the next operator kind of each side, its milliseconds and share; the
    sentence each side's wall time and operators' sum."""
    check_made_by(data, text)
    parts, rows = rows[: len(data["parts"])], rows[len(data["parts"]) :]
    for (name, ours, theirs, ratio), part in zip(parts, data["parts"], strict=True):
        assert name == part["part"] and agrees(ours, part["this_model_ms"]) and agrees(theirs, part["onnxruntime_ms"])
        assert agrees(ratio, part["this_model_ms"] / part["onnxruntime_ms"]), (name, ratio)
    assert len(rows) == max(len(data["this_model_ops"]), len(data["onnxruntime_ops"]))
    for index, row in enumerate(rows):
        for cells, ops in ((row[:3], data["this_model_ops"]), (row[3:], data["onnxruntime_ops"])):
            op = ops[index]
            assert cells[0] == f"`{op['op']}`" and agrees(cells[1], op["ms"]), row
            assert agrees(cells[2].rstrip("%"), op["share"] * 100), row
    text = " ".join(text.split())
    for side in (data["this_model"], data["onnxruntime"]):
        assert f"{side['wall_ms']:.1f} ms a forward" in text and f"{side['operators_ms']:.1f} ms in its" in text


CHECKS: dict[str, Callable[[list[list[str]], dict, str], None]] = {
    "attention-cost.json": check_attention_cost,
    "bench-model-2threads.json": check_bench_model,
    "bench-model-1thread.json": check_bench_model,
    "bench-app.json": check_bench_app,
    "bench-app-large.json": check_bench_app_large,
    "bench-teacher.json": check_bench_teacher,
    "bench-camera.json": check_bench_camera,
    "bench-corruptions.json": check_bench_corruptions,
    "profile-384x512-2threads.json": check_profile,
}


def test_every_table_is_its_committed_json_or_says_it_has_none() -> None:
    tied = 0
    for heading, text in sections().items():
        rows = table_rows(text)
        if not rows:
            continue
        files = linked_json(text)
        if not files:
            assert NOT_RECORDED in text, f"{heading!r}: a table with neither a committed JSON nor {NOT_RECORDED!r}"
            continue
        (path,) = files
        assert path.is_file() and path.name in CHECKS, f"{heading!r}: {path} is missing or has no check"
        CHECKS[path.name](rows, json.loads(path.read_text()), text)
        tied += 1
    assert tied == len(CHECKS)  # every check ran on its table: a renamed link or section cannot drop one


def test_tables_are_printed_from_their_json() -> None:
    """Each result in bench/results/ is shown in bench/README.md as `python -m bench.tables` prints it, not retyped."""
    readme = README.read_text()
    for name in TABLES:
        assert block(name) in readme, f"{name}: the README's table is not `python -m bench.tables {name}`'s output"
