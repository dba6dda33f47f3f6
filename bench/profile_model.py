"""Where B0's forward spends its time, in this model and in onnxruntime on the same weights, by part and by operator.

    python -m bench.profile_model [--size 384 512] [--threads 2] [--runs 20] [--json-out PATH]

Both run the shipped architecture (B0, 4 classes, random weights: the time does not depend on them) at ``--size``
in eval mode, batch 1, after a warm-up. This model under ``torch.profiler`` (CPU self time of each aten operator,
summed over the runs), onnxruntime with its own profiler on the graph ``train.export.export_onnx`` writes (the
duration of each node, summed by op type). Each side's total is the sum of its operators, and the wall time per
forward is measured apart, without a profiler and as ``bench_model`` times it (each forward after a pause), so the
overhead outside the operators shows as the difference. The
report also splits each side's forward into its parts (:data:`PARTS`: each encoder stage with its patch merging,
blocks and closing LayerNorm, then the decoder): this model's by the wall time between hooks on each part's first and
last module, onnxruntime's by summing its nodes' times by the module path the exporter names each node by (a node
onnxruntime added, such as a layout reorder, counts in the part of the node before it). ``--json-out`` writes it.
"""

import argparse
import json
import re
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from bench.bench_model import onnx_loaded, onnx_runtime
from bench.interleave import PAUSE, interleaved
from bench.record import publish
from segformer.allocator import keep_freed_memory
from segformer.model import SegFormer

#: The parts of the forward timed apart.
PARTS = ("stage 1", "stage 2", "stage 3", "stage 4", "decoder")


def part_of(node: str) -> str | None:
    """The part of :data:`PARTS` an exported node belongs to, by its module path (None for a node without one)."""
    stage = re.match(r"/encoder/(?:patch_merging|blocks|norms)\.(\d)", node)
    if stage:
        return PARTS[int(stage[1])]
    return "decoder" if node.startswith("/decoder/") else None


def wall_seconds(step: Callable[[], object], runs: int) -> float:
    """Median seconds of ``step()`` over ``runs`` calls, each after a pause of ``bench.interleave.PAUSE`` seconds, as
    ``bench_model`` times its contestants."""
    [times] = interleaved({"step": step}, runs, warmup=0, pause=PAUSE).values()
    return statistics.median(times)


def torch_profile(model: SegFormer, x: torch.Tensor, runs: int) -> dict[str, float]:
    """{aten operator: self CPU seconds per forward}."""
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(runs):
            model(x)
    return {event.key: event.self_cpu_time_total / 1e6 / runs for event in prof.key_averages()}


def torch_parts(model: SegFormer, x: torch.Tensor, runs: int) -> dict[str, float]:
    """{part: wall seconds per forward}, between a hook before each part's first module and one after its last."""
    encoder = model.encoder
    firsts, lasts = [*encoder.patch_merging, model.decoder], [*encoder.norms, model.decoder]
    began: dict[str, float] = {}
    spent: dict[str, float] = defaultdict(float)

    def start(part: str) -> None:
        began[part] = time.perf_counter()

    def stop(part: str) -> None:
        spent[part] += time.perf_counter() - began[part]

    hooks = []
    for part, first, last in zip(PARTS, firsts, lasts, strict=True):
        hooks.append(first.register_forward_pre_hook(lambda *_, part=part: start(part)))
        hooks.append(last.register_forward_hook(lambda *_, part=part: stop(part)))
    try:
        with torch.inference_mode():
            for _ in range(runs):
                model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return {part: spent[part] / runs for part in PARTS}


def onnx_profile(
    model: SegFormer, x: torch.Tensor, runs: int, folder: Path
) -> tuple[dict[str, float], dict[str, float], float]:
    """({op type: seconds per forward}, {part: seconds per forward}, onnxruntime's wall seconds per forward without
    its profiler)."""
    plain = onnx_runtime(model, folder / "b0.onnx")
    feed = {"pixel_values": x.numpy()}
    plain.run(None, feed)
    wall = wall_seconds(lambda: plain.run(None, feed), runs)
    profiled = onnx_loaded(folder / "b0.onnx", profile_prefix=folder / "ort")
    for _ in range(runs + 1):
        profiled.run(None, feed)
    events = json.loads(Path(profiled.end_profiling()).read_text())
    per_op: dict[str, float] = defaultdict(float)
    per_part: dict[str, float] = defaultdict(float)
    part = PARTS[0]
    nodes = [event for event in events if event.get("cat") == "Node" and event["name"].endswith("_kernel_time")]
    for event in sorted(nodes, key=lambda event: event["ts"]):
        seconds = event["dur"] / 1e6 / (runs + 1)
        part = part_of(event["name"]) or part
        per_op[event["args"]["op_name"]] += seconds
        per_part[part] += seconds
    return dict(per_op), {part: per_part[part] for part in PARTS}, wall


def shares(per_op: dict[str, float], top: int = 12) -> list[dict[str, float | str]]:
    """The ``top`` operator kinds by time, each with its seconds per forward and share of the operators' total."""
    total = sum(per_op.values())
    ranked = sorted(per_op.items(), key=lambda item: -item[1])[:top]
    return [{"op": op, "ms": round(seconds * 1e3, 2), "share": round(seconds / total, 3)} for op, seconds in ranked]


def main() -> None:
    """Profile both and print the JSON report."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile_model", description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, nargs=2, default=(384, 512), help="input height and width")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads of both")
    parser.add_argument("--runs", type=int, default=20, help="forwards profiled and timed")
    parser.add_argument("--json-out", type=Path, help="also write the report to this JSON file")
    args = parser.parse_args()
    keep_freed_memory()  # as the app and the command line run
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = SegFormer.from_preset("b0", 4).eval()
    x = torch.randn(1, 3, *args.size)
    with torch.inference_mode():
        model(x)
        ours_wall = wall_seconds(lambda: model(x), args.runs)
    ours = torch_profile(model, x, args.runs)
    ours_parts = torch_parts(model, x, args.runs)
    with tempfile.TemporaryDirectory() as tmp:
        theirs, theirs_parts, theirs_wall = onnx_profile(model, x, args.runs, Path(tmp))
    report = {
        "size": list(args.size),
        "this_model": {"wall_ms": round(ours_wall * 1e3, 2), "operators_ms": round(sum(ours.values()) * 1e3, 2)},
        "onnxruntime": {"wall_ms": round(theirs_wall * 1e3, 2), "operators_ms": round(sum(theirs.values()) * 1e3, 2)},
        "parts": [
            {
                "part": part,
                "this_model_ms": round(ours_parts[part] * 1e3, 2),
                "onnxruntime_ms": round(theirs_parts[part] * 1e3, 2),
            }
            for part in PARTS
        ],
        "this_model_ops": shares(ours),
        "onnxruntime_ops": shares(theirs),
    }
    publish(report, parser.prog, args.runs, args.json_out)


if __name__ == "__main__":
    main()
