"""This SegFormer against transformers' SegformerForSemanticSegmentation, same weights, same run, CPU.

Prints one JSON line per case with both figures, their ratio (ours / transformers) and the goal:

* latency, B0, eval, inference_mode: median of ``--runs`` forwards (after warm-up) at the sizes of
  ``LATENCY_SIZES`` (384x512, the shipped checkpoint's working size for a 4:3 photo; 512x512; 1024x2048), the
  runs interleaved so background load hits them alike; a third figure, ``onnxruntime``, is this model exported by
  ``train.export.export_onnx`` (float32, opset 17) and run by onnxruntime's CPU provider with as many intra-op
  threads as torch, with its own ratio, ours / onnxruntime (``ratio_onnxruntime``);
* peak memory, B0 at 1024x2048: each model in a fresh process (``--peak-memory`` runs one), peak resident set
  (VmHWM) during one forward minus the resident set after building the model, loading the weights, creating
  the input and a small warm-up forward;
* training throughput, B0, batch 8 of 256x256 crops, 4 classes: images/s over forward + loss (logits upsampled
  to the label size, cross entropy) + backward + AdamW step, train mode with the default drop path and dropout
  (this model drops whole decoder channels, as the reference implementation's Dropout2d; transformers drops
  elements).

Usage: ``python -m bench.bench_model [--runs 10] [--threads N] [--json-out PATH]``. Without ``--threads`` torch's
default thread count is used; on a machine shared with other busy processes, ``--threads 1`` shows the cost of the
work itself (a parallel region waits for any of its threads that the OS has parked, which hits the model with more
operators harder).

Design variants: the flags of ``train.train`` (``--patch-merging``, ``--sr-ratios``, ``--ffn-activations``,
``--ffn-padding``, ``--token-mixer``, ``--decoder``, ``--decoder-dim``) change B0's config
(``segformer.config.MiTConfig``). transformers cannot build such a model, so its peer is then the paper's B0 (this
project's, default config), both from random weights (seed 0) and timed interleaved in the same run, with the
ratio variant / paper and no goal: the same latency and training cases, and the peak memory at 1024x2048 measured
first, each model in a fresh process under the ``--memory-cap-gib`` address-space cap (a variant that runs out of
memory there is not timed at that size).

Attention cost: ``python -m bench.bench_model --sr-sweep [--runs 3] [--json-out PATH]`` measures B0 (4 classes,
eval, inference_mode, batch 1) with the key reduction ratios of ``SR_SWEEP`` (the paper's 8 4 2 1 down to full
attention, 1 1 1 1) at the square sizes of ``SWEEP_SIZES``. Per case: the analytic size of the attention matrices;
the peak memory of a forward and of a forward that also returns the attention maps (``return_attentions``, which
keeps every block's matrix), each in a fresh process whose address space is capped at ``--memory-cap-gib`` so that
an allocation beyond it fails inside torch rather than waking the OS's out-of-memory killer; and the median latency
of the forward, the settings that fit timed interleaved at each size. A path that runs out of memory is reported so
and its larger sizes are skipped. Ratios are against the paper's setting at the same size. One JSON line per case.

In every mode ``--json-out`` also writes all the cases to one JSON file, with the command, the runs, the threads,
the load average and the machine (``bench.record.run_record``).
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.interleave import PAUSE, interleaved
from bench.record import run_record
from segformer.allocator import keep_freed_memory
from segformer.checkpoint import load_tensors, save_json
from segformer.config import MiTConfig, given_variants, preset
from segformer.model import SegFormer
from segformer.predict import upsample_logits
from segformer.transformers_weights import config_from_transformers, load_transformers_weights
from train.train import add_variant_flags

if TYPE_CHECKING:  # imported where used: a peak-memory child of this project's model does without them
    import onnxruntime as ort
    from transformers import SegformerForSemanticSegmentation

ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30
#: Key reduction ratios per stage (Eq. 2) that ``--sr-sweep`` measures: the paper's first, full attention last.
SR_SWEEP: tuple[tuple[int, int, int, int], ...] = ((8, 4, 2, 1), (4, 2, 1, 1), (2, 1, 1, 1), (1, 1, 1, 1))
#: Square input sizes of ``--sr-sweep``, smallest first (a setting that runs out of memory skips the larger ones).
SWEEP_SIZES = (256, 512, 1024)
#: The two paths whose peak memory ``--sr-sweep`` measures: the plain forward, and one returning attention maps.
SWEEP_PATHS = ("forward", "attention_maps")
#: The latency cases of the transformers comparison, (height, width), with the goal for ours / transformers.
LATENCY_SIZES: dict[tuple[int, int], str | None] = {(384, 512): None, (512, 512): "<= 0.5", (1024, 2048): None}


def make_models(weights_dir: Path, num_classes: int) -> tuple[SegFormer, "SegformerForSemanticSegmentation"]:
    """A random B0 in transformers (default sdpa attention), saved in the published layout and loaded by both."""
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    if not (weights_dir / "model.safetensors").is_file():
        torch.manual_seed(0)
        theirs = SegformerForSemanticSegmentation(SegformerConfig(num_labels=num_classes))
        theirs.save_pretrained(weights_dir)
    theirs = SegformerForSemanticSegmentation.from_pretrained(weights_dir)
    ours = SegFormer(config_from_transformers(theirs.config.to_dict()), num_classes)
    load_transformers_weights(ours, load_tensors(weights_dir / "model.safetensors"), str(weights_dir))
    return ours, theirs


def variant_config(variants: dict[str, Any]) -> MiTConfig:
    """B0 with the design variants ``variants`` (MiTConfig fields; empty: the paper's B0)."""
    return replace(preset("b0"), **variants)


def variant_flags(variants: dict[str, Any]) -> list[str]:
    """The command-line flags that give ``variants`` (the inverse of ``variants_of(parse_args(...))``)."""
    flags = []
    for name, value in variants.items():
        flags += ["--" + name.replace("_", "-"), *map(str, value if isinstance(value, tuple) else (value,))]
    return flags


def segformer_models(configs: dict[str, MiTConfig], num_classes: int) -> dict[str, SegFormer]:
    """This project's SegFormer for each config, each from the same random seed (0)."""
    models = {}
    for name, config in configs.items():
        torch.manual_seed(0)
        models[name] = SegFormer(config, num_classes)
    return models


def forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x) if isinstance(model, SegFormer) else model(pixel_values=x).logits


def interleaved_medians(steps: dict[str, Callable[[], object]], runs: int, warmup: int) -> dict[str, float]:
    """Median seconds per call of each step, the steps called in turn so that load affects them alike."""
    return {name: statistics.median(t) for name, t in interleaved(steps, runs, warmup, PAUSE).items()}


def line(case: str, metric: str, figures: dict[str, float | None], goal: str | None, **extra: object) -> dict[str, Any]:
    """Print and return one case with the figure of each contestant; the ratio is the first's over the second's, and
    ``goal`` a bound on it such as "<= 0.5", or None. A figure of None (not measured) leaves the ratio None."""
    first, second = list(figures.values())[:2]
    ratio = first / second if first is not None and second is not None else None
    met = None
    if goal is not None and ratio is not None:
        op, bound = goal.split()
        met = ratio <= float(bound) if op == "<=" else ratio >= float(bound)
    record = {"case": case, "metric": metric, **{k: rounded(v, 4) for k, v in figures.items()}}
    extra = {"threads": torch.get_num_threads(), "load_avg_1m": round(os.getloadavg()[0], 2), **extra}
    record |= {"ratio": rounded(ratio, 3), "goal": goal, "met": met, **extra}
    print(json.dumps(record), flush=True)
    return record


def rounded(value: float | None, digits: int) -> float | None:
    """``value`` rounded to ``digits`` decimals; None stays None."""
    return None if value is None else round(value, digits)


def onnx_runtime(model: SegFormer, path: Path) -> "ort.InferenceSession":
    """``model`` exported to ONNX at ``path``, loaded in onnxruntime (CPU) with torch's intra-op thread count."""
    from train.export import export_onnx

    return onnx_loaded(export_onnx(model, path))


def onnx_loaded(path: Path, profile_prefix: Path | None = None) -> "ort.InferenceSession":
    """The ONNX file at ``path`` in onnxruntime (CPU) with torch's intra-op thread count and one inter-op thread;
    with ``profile_prefix``, onnxruntime's profiler on, writing its trace there."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_prefix)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def bench_latency(
    models: dict[str, nn.Module],
    size: tuple[int, int],
    runs: int,
    goal: str | None = None,
    runtime: "ort.InferenceSession | None" = None,
    **extra: object,
) -> dict[str, Any]:
    """The median forward latency of each model (and of ``runtime``, if given, with the first model's ratio to it) at
    ``size``, interleaved."""
    x = torch.randn(1, 3, *size)
    steps: dict[str, Callable[[], object]] = {k: (lambda m=m: forward(m, x)) for k, m in models.items()}
    for model in models.values():
        model.eval()
    if runtime is not None:
        steps["onnxruntime"] = lambda: runtime.run(None, {"pixel_values": x.numpy()})
    with torch.inference_mode():
        medians = interleaved_medians(steps, runs, warmup=2)
    if runtime is not None:
        extra["ratio_onnxruntime"] = round(next(iter(medians.values())) / medians["onnxruntime"], 3)
    return line(f"b0 {size[0]}x{size[1]} eval", "latency_s", dict(medians), goal, runs=runs, **extra)


def bench_training(
    models: dict[str, nn.Module], runs: int, goal: str | None, batch: int = 8, crop: int = 256, **extra: object
) -> dict[str, Any]:
    torch.manual_seed(0)
    images = torch.randn(batch, 3, crop, crop)
    labels = torch.randint(0, 4, (batch, crop, crop))

    def step_of(model: nn.Module) -> Callable[[], None]:
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=6e-5)

        def step() -> None:
            logits = upsample_logits(forward(model, images), (crop, crop))
            loss = F.cross_entropy(logits, labels, ignore_index=255)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return step

    medians = interleaved_medians({name: step_of(model) for name, model in models.items()}, runs, warmup=1)
    rates: dict[str, float | None] = {name: batch / seconds for name, seconds in medians.items()}
    return line(f"b0 train batch {batch} {crop}x{crop}", "images_per_s", rates, goal, runs=runs, **extra)


def vm_kib(field: str) -> int:
    for row in Path("/proc/self/status").read_text().splitlines():
        if row.startswith(field + ":"):
            return int(row.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


@contextmanager
def address_space_cap(limit_bytes: int | None) -> Iterator[None]:
    """Within the block, the process's address space is capped at ``limit_bytes`` (the soft RLIMIT_AS): a larger
    allocation fails with ENOMEM, which torch raises as a RuntimeError, instead of the OS's out-of-memory killer
    ending some process. The cap counts mapped but untouched memory too (the loaded libraries: a few GiB)."""
    if limit_bytes is None:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(
        resource.RLIMIT_AS, (limit_bytes if hard == resource.RLIM_INFINITY else min(limit_bytes, hard), hard)
    )
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def peak_memory_growth(
    model: nn.Module, size: tuple[int, int], cap_bytes: int | None = None, attention_maps: bool = False
) -> dict[str, Any]:
    """The peak resident-set growth (MiB) of one eval forward of ``model`` at ``size`` over the resident set after
    creating the input and a small warm-up forward, for a fresh process. Under ``cap_bytes`` (an address-space cap,
    see ``address_space_cap``) an allocation that fails leaves the peak None and ``out_of_memory`` true, with the
    error. ``attention_maps``: the forward also returns every block's attention probabilities."""
    x = torch.randn(1, 3, *size)
    error = None
    with torch.inference_mode():
        forward(model, torch.randn(1, 3, 64, 64))
        baseline = vm_kib("VmRSS")
        address_space = vm_kib("VmSize")
        with address_space_cap(cap_bytes):
            try:
                model(x, return_attentions=True) if attention_maps else forward(model, x)
            except (RuntimeError, MemoryError) as err:  # an allocation refused under the cap
                error = f"{type(err).__name__}: {str(err).strip().splitlines()[-1][:200]}"
    peak = None if error else (vm_kib("VmHWM") - baseline) / 1024
    return {
        "peak_memory_mib": peak,
        "out_of_memory": error is not None,
        "error": error,
        "address_space_before_mib": round(address_space / 1024, 1),
    }


def peak_memory_child(which: str, weights_dir: Path, size: tuple[int, int]) -> None:
    """Run in a fresh process: print the peak resident-set growth (MiB) of one eval forward of one model."""
    ours, theirs = make_models(weights_dir, num_classes=150)
    model = (ours if which == "ours" else theirs).eval()
    del ours, theirs
    print(peak_memory_growth(model, size)["peak_memory_mib"])


def bench_peak_memory(weights_dir: Path, size: tuple[int, int]) -> dict[str, Any]:
    peaks: dict[str, float | None] = {}
    for which in ("ours", "transformers"):
        args = ["--peak-memory", which, "--weights", str(weights_dir), "--size", str(size[0]), str(size[1])]
        peaks[which] = float(run_child(args).split()[-1])
    return line(f"b0 {size[0]}x{size[1]} eval", "peak_memory_mib", peaks, "<= 0.5")


def run_child(args: list[str]) -> str:
    """The stdout of ``python -m bench.bench_model ARGS`` in a fresh process with this one's thread count."""
    command = [sys.executable, "-m", "bench.bench_model", *args, "--threads", str(torch.get_num_threads())]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout


def segformer_peak_memory(
    variants: dict[str, Any], size: tuple[int, int], num_classes: int, cap_gib: float, attention_maps: bool = False
) -> dict[str, Any]:
    """``peak_memory_growth`` of B0 with ``variants`` (random weights) at ``size``, in a fresh process capped at
    ``cap_gib`` GiB of address space."""
    args = ["--peak-memory", "segformer", "--size", str(size[0]), str(size[1]), "--num-classes", str(num_classes)]
    args += ["--memory-cap-gib", str(cap_gib), *variant_flags(variants)]
    if attention_maps:
        args.append("--attention-maps")
    return json.loads(run_child(args).splitlines()[-1])


def out_of_memory_note(cap_gib: float) -> str:
    """How a case that ran out of memory is reported."""
    return f"out of memory under the {cap_gib:g} GiB cap"


def bench_variant(variants: dict[str, Any], runs: int, cap_gib: float) -> list[dict[str, Any]]:
    """The variant against the paper's B0, both this project's model: peak memory, latency, training."""
    extra = {"variants": variants}
    configs = {"variant": variant_config(variants), "paper": preset("b0")}
    large = (1024, 2048)
    peaks = {name: segformer_peak_memory(v, large, 150, cap_gib) for name, v in (("variant", variants), ("paper", {}))}
    fits = not any(peak["out_of_memory"] for peak in peaks.values())
    notes = {} if fits else {"note": out_of_memory_note(cap_gib)}
    figures = {name: peak["peak_memory_mib"] for name, peak in peaks.items()}
    cases = [line(f"b0 {large[0]}x{large[1]} eval", "peak_memory_mib", figures, None, **extra, **notes)]
    models = segformer_models(configs, num_classes=150)
    for size in ((512, 512), large):
        if size == large and not fits:
            skipped = line(
                f"b0 {size[0]}x{size[1]} eval",
                "latency_s",
                dict.fromkeys(models),
                None,
                **extra,
                note=f"skipped: {out_of_memory_note(cap_gib)} at {size[0]}x{size[1]}",
            )
            cases.append(skipped)
        else:
            cases.append(bench_latency(models, size, runs, **extra))
    return [*cases, bench_training(segformer_models(configs, num_classes=4), runs, None, **extra)]


def compare_with_transformers(runs: int) -> list[dict[str, Any]]:
    """This model against transformers' from the same weights: latency at each of ``LATENCY_SIZES`` (onnxruntime
    too), peak memory at 1024x2048, training throughput."""
    with tempfile.TemporaryDirectory() as tmp:
        weights_dir = Path(tmp) / "b0-150"
        ours, theirs = make_models(weights_dir, num_classes=150)
        runtime = onnx_runtime(ours, Path(tmp) / "b0-150.onnx")
        pair = {"ours": ours, "transformers": theirs}
        cases = [bench_latency(pair, size, runs, goal, runtime) for size, goal in LATENCY_SIZES.items()]
        cases.append(bench_peak_memory(weights_dir, (1024, 2048)))
        ours, theirs = make_models(Path(tmp) / "b0-4", num_classes=4)
        cases.append(bench_training({"ours": ours, "transformers": theirs}, runs, ">= 1.5"))
    return cases


def attention_cost(model: SegFormer, size: tuple[int, int]) -> dict[str, Any]:
    """The analytic size of ``model``'s attention matrices (float32) at an input of ``size``: stage 1's, queries x
    keys x heads, which one block holds at a time, and all blocks' together, which ``return_attentions`` keeps."""
    config, (height, width) = model.config, size
    stages = []
    for merge, heads, sr in zip(model.encoder.patch_merging, config.heads, config.sr_ratios, strict=True):
        height, width = merge.grid_size(height, width)
        stages.append((height * width, (height // sr) * (width // sr), heads))
    queries, keys, heads = stages[0]
    total = sum(depth * q * k * h * 4 for depth, (q, k, h) in zip(config.depths, stages, strict=True))
    return {
        "stage1_queries": queries,
        "stage1_keys": keys,
        "stage1_heads": heads,
        "stage1_attention_mib": round(queries * keys * heads * 4 / 2**20, 1),
        "attention_maps_mib": round(total / 2**20, 1),
    }


def sweep_peak_memory(
    sr: tuple[int, int, int, int], side: int, cap_gib: float, ran_out: dict[tuple[tuple[int, ...], str], int]
) -> dict[str, dict[str, Any]]:
    """The peak memory of each of ``SWEEP_PATHS`` for one case, in capped child processes; a path in ``ran_out``
    (which maps (sr_ratios, path) to the side where memory ran out) is skipped, and one that runs out is added."""
    result = {}
    for path in SWEEP_PATHS:
        if (sr, path) in ran_out:
            at = ran_out[sr, path]
            result[path] = {"status": "skipped", "note": f"skipped: {out_of_memory_note(cap_gib)} at {at}x{at}"}
            continue
        peak = segformer_peak_memory({"sr_ratios": sr}, (side, side), 4, cap_gib, path == "attention_maps")
        if peak["out_of_memory"]:
            ran_out[sr, path] = side
            result[path] = {"status": "out_of_memory", "note": out_of_memory_note(cap_gib), "error": peak["error"]}
        else:
            result[path] = {"status": "ok", "peak_memory_mib": round(peak["peak_memory_mib"], 1)}
    return result


def add_ratios(cases: list[dict[str, Any]], paper: dict[str, Any]) -> None:
    """Give every path of each case its latency and peak-memory ratios over the ``paper`` case's, where both exist."""
    for case in cases:
        for path in SWEEP_PATHS:
            for metric, ratio in (("latency_s", "latency_ratio"), ("peak_memory_mib", "peak_memory_ratio")):
                ours, theirs = case[path].get(metric), paper[path].get(metric)
                if ours is not None and theirs is not None:
                    case[path][ratio] = round(ours / theirs, 3)


def sr_sweep(runs: int, cap_gib: float) -> list[dict[str, Any]]:
    """Every (sr_ratios, size) case of the attention-cost sweep (B0, 4 classes), each printed as one JSON line."""
    models = segformer_models({sr: variant_config({"sr_ratios": sr}) for sr in SR_SWEEP}, num_classes=4)
    ran_out: dict[tuple[tuple[int, ...], str], int] = {}
    cases = []
    for side in SWEEP_SIZES:
        row = []
        for sr, model in models.items():
            case = {"case": f"b0 sr {' '.join(map(str, sr))} {side}x{side} eval", "sr_ratios": sr, "size": [side] * 2}
            row.append({**case, **attention_cost(model, (side, side)), **sweep_peak_memory(sr, side, cap_gib, ran_out)})
        # Only the settings whose forward fitted under the cap are timed, interleaved.
        fitting = {case["case"]: models[case["sr_ratios"]].eval() for case in row if case["forward"]["status"] == "ok"}
        x = torch.randn(1, 3, side, side)
        with torch.inference_mode():
            medians = interleaved_medians({k: (lambda m=m, x=x: m(x)) for k, m in fitting.items()}, runs, warmup=1)
        for case in row:
            if case["case"] in medians:
                case["forward"]["latency_s"] = round(medians[case["case"]], 4)
        add_ratios(row, paper=row[0])
        for case in row:
            case |= {"runs": runs, "threads": torch.get_num_threads(), "load_avg_1m": round(os.getloadavg()[0], 2)}
            print(json.dumps(case), flush=True)
        cases += row
    return cases


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (``argv``, or sys.argv's); ``--runs`` defaults to 10, or 3 with ``--sr-sweep``."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_model", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--runs", type=int, help="timed runs per model and case, median reported (default 10; 3 with --sr-sweep)")
    add("--threads", type=int, help="intra-op threads (default: torch's default)")
    add_variant_flags(parser)
    add("--sr-sweep", action="store_true", help="the attention-cost sweep over sr_ratios and input sizes")
    add("--json-out", type=Path, help="also write every case, the run's settings and the machine to this JSON file")
    add("--memory-cap-gib", type=float, default=12.0, help="address-space cap of a peak-memory process (GiB)")
    add("--peak-memory", choices=("ours", "transformers", "segformer"), help=argparse.SUPPRESS)
    add("--weights", type=Path, help=argparse.SUPPRESS)
    add("--size", type=int, nargs=2, default=(1024, 2048), help=argparse.SUPPRESS)
    add("--num-classes", type=int, default=150, help=argparse.SUPPRESS)
    add("--attention-maps", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sr_sweep and variants_of(args):
        parser.error("--sr-sweep sets sr_ratios itself and takes no design-variant flags")
    if args.runs is None:
        args.runs = 3 if args.sr_sweep else 10
    return args


def variants_of(args: argparse.Namespace) -> dict[str, Any]:
    """The design variants given on the command line, as MiTConfig fields (sr_ratios a tuple)."""
    return given_variants(vars(args))


def main(argv: list[str] | None = None) -> None:
    """The transformers comparison, the variant against the paper's B0, the sweep, or a peak-memory child."""
    args = parse_args(argv)
    keep_freed_memory()  # as the app and the command line run
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = variants_of(args)
    if args.peak_memory == "segformer":
        model = segformer_models({"": variant_config(variants)}, args.num_classes)[""].eval()
        cap = round(args.memory_cap_gib * GIB)
        print(json.dumps(peak_memory_growth(model, tuple(args.size), cap, args.attention_maps)))
        return
    if args.peak_memory:
        peak_memory_child(args.peak_memory, args.weights, tuple(args.size))
        return
    if args.sr_sweep:
        cases, settings = sr_sweep(args.runs, args.memory_cap_gib), {"memory_cap_gib": args.memory_cap_gib}
    elif variants:
        cases = bench_variant(variants, args.runs, args.memory_cap_gib)
        settings = {"variants": variants, "memory_cap_gib": args.memory_cap_gib}
    else:
        cases, settings = compare_with_transformers(args.runs), {}
    if args.json_out:
        record = run_record("python -m bench.bench_model", sys.argv[1:] if argv is None else argv, args.runs)
        save_json(args.json_out, {"cases": cases, **settings, **record})


if __name__ == "__main__":
    main()
