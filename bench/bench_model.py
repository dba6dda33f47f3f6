"""This SegFormer against transformers' SegformerForSemanticSegmentation, same weights, same run, CPU.

Prints one JSON line per case with both figures, their ratio (ours / transformers) and the goal:

* latency, B0, eval, inference_mode: median of ``--runs`` forwards (after warm-up) at 512x512 and 1024x2048,
  the models' runs interleaved so background load hits them alike; a third figure, ``onnxruntime``, is this model
  exported by ``train.export.export_onnx`` (float32, opset 17) and run by onnxruntime's CPU provider with as many
  intra-op threads as torch (not part of the ratio);
* peak memory, B0 at 1024x2048: each model in a fresh process (``--peak-memory`` runs one), peak resident set
  (VmHWM) during one forward minus the resident set after building the model, loading the weights, creating
  the input and a small warm-up forward;
* training throughput, B0, batch 8 of 256x256 crops, 4 classes: images/s over forward + loss (logits upsampled
  to the label size, cross entropy) + backward + AdamW step, train mode with the default drop path and dropout
  (this model drops whole decoder channels, as the reference implementation's Dropout2d; transformers drops
  elements).

Usage: ``python -m bench.bench_model [--runs 10] [--threads N]``. Without ``--threads`` torch's default thread
count is used; on a machine shared with other busy processes, ``--threads 1`` shows the cost of the work itself
(a parallel region waits for any of its threads that the OS has parked, which hits the model with more
operators harder).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import onnxruntime as ort
import torch
import torch.nn.functional as F
from transformers import SegformerConfig, SegformerForSemanticSegmentation

from bench.interleave import interleaved
from segformer.checkpoint import load_tensors
from segformer.model import SegFormer
from segformer.predict import upsample_logits
from segformer.transformers_weights import config_from_transformers, load_transformers_weights

ROOT = Path(__file__).resolve().parents[1]
from train.export import export_onnx  # noqa: E402


def make_models(weights_dir: Path, num_classes: int) -> tuple[SegFormer, SegformerForSemanticSegmentation]:
    """A random B0 in transformers (default sdpa attention), saved in the published layout and loaded by both."""
    if not (weights_dir / "model.safetensors").is_file():
        torch.manual_seed(0)
        theirs = SegformerForSemanticSegmentation(SegformerConfig(num_labels=num_classes))
        theirs.save_pretrained(weights_dir)
    theirs = SegformerForSemanticSegmentation.from_pretrained(weights_dir)
    ours = SegFormer(config_from_transformers(theirs.config.to_dict()), num_classes)
    load_transformers_weights(ours, load_tensors(weights_dir / "model.safetensors"), str(weights_dir))
    return ours, theirs


def forward(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x) if isinstance(model, SegFormer) else model(pixel_values=x).logits


def interleaved_medians(steps: dict[str, Callable[[], None]], runs: int, warmup: int) -> dict[str, float]:
    """Median seconds per call of each step, the steps called in turn so that load affects them alike."""
    return {name: statistics.median(t) for name, t in interleaved(steps, runs, warmup).items()}


def line(
    case: str,
    metric: str,
    ours: float,
    theirs: float,
    goal: str | None,
    onnxruntime: float | None = None,
    **extra: object,
) -> None:
    """One JSON line; ``goal`` is a bound on the ratio ours / transformers such as "<= 0.5", or None."""
    ratio = ours / theirs
    met = None
    if goal is not None:
        op, bound = goal.split()
        met = ratio <= float(bound) if op == "<=" else ratio >= float(bound)
    record = {"case": case, "metric": metric, "ours": round(ours, 4), "transformers": round(theirs, 4)}
    if onnxruntime is not None:
        record["onnxruntime"] = round(onnxruntime, 4)
    extra = {"threads": torch.get_num_threads(), "load_avg_1m": round(os.getloadavg()[0], 2), **extra}
    print(json.dumps({**record, "ratio": round(ratio, 3), "goal": goal, "met": met, **extra}), flush=True)


def onnx_runtime(model: SegFormer, path: Path) -> ort.InferenceSession:
    """``model`` exported to ONNX at ``path``, loaded in onnxruntime (CPU) with torch's intra-op thread count."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(export_onnx(model, path)), options, providers=["CPUExecutionProvider"])


def bench_latency(
    ours: SegFormer, theirs: torch.nn.Module, runtime: ort.InferenceSession, size: tuple[int, int], runs: int
) -> None:
    x = torch.randn(1, 3, *size)
    steps = {k: (lambda m=m: forward(m, x)) for k, m in {"ours": ours.eval(), "transformers": theirs.eval()}.items()}
    steps["onnxruntime"] = lambda: runtime.run(None, {"pixel_values": x.numpy()})
    with torch.inference_mode():
        medians = interleaved_medians(steps, runs, warmup=2)
    goal = "<= 0.5" if size == (512, 512) else None
    case = f"b0 {size[0]}x{size[1]} eval"
    line(case, "latency_s", medians["ours"], medians["transformers"], goal, medians["onnxruntime"], runs=runs)


def bench_training(ours: SegFormer, theirs: torch.nn.Module, runs: int, batch: int = 8, crop: int = 256) -> None:
    torch.manual_seed(0)
    images = torch.randn(batch, 3, crop, crop)
    labels = torch.randint(0, 4, (batch, crop, crop))

    def step_of(model: torch.nn.Module) -> Callable[[], None]:
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=6e-5)

        def step() -> None:
            logits = upsample_logits(forward(model, images), (crop, crop))
            loss = F.cross_entropy(logits, labels, ignore_index=255)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return step

    medians = interleaved_medians({"ours": step_of(ours), "transformers": step_of(theirs)}, runs, warmup=1)
    line(
        f"b0 train batch {batch} {crop}x{crop}",
        "images_per_s",
        batch / medians["ours"],
        batch / medians["transformers"],
        ">= 1.5",
        runs=runs,
    )


def vm_kib(field: str) -> int:
    for row in Path("/proc/self/status").read_text().splitlines():
        if row.startswith(field + ":"):
            return int(row.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_memory_child(which: str, weights_dir: Path, size: tuple[int, int]) -> None:
    """Run in a fresh process: print the peak resident-set growth (MiB) of one eval forward of one model."""
    ours, theirs = make_models(weights_dir, num_classes=150)
    model = (ours if which == "ours" else theirs).eval()
    del ours, theirs
    x = torch.randn(1, 3, *size)
    with torch.inference_mode():
        forward(model, torch.randn(1, 3, 64, 64))
        baseline = vm_kib("VmRSS")
        forward(model, x)
    print((vm_kib("VmHWM") - baseline) / 1024)


def bench_peak_memory(weights_dir: Path, size: tuple[int, int]) -> None:
    peaks = {}
    for which in ("ours", "transformers"):
        args = ["--peak-memory", which, "--weights", str(weights_dir), "--size", str(size[0]), str(size[1])]
        args += ["--threads", str(torch.get_num_threads())]
        command = [sys.executable, "-m", "bench.bench_model", *args]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
        peaks[which] = float(result.stdout.split()[-1])
    line(f"b0 {size[0]}x{size[1]} eval", "peak_memory_mib", peaks["ours"], peaks["transformers"], "<= 0.5")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs per model and case (median reported)")
    parser.add_argument("--threads", type=int, help="intra-op threads (default: torch's default)")
    parser.add_argument("--peak-memory", choices=("ours", "transformers"), help=argparse.SUPPRESS)
    parser.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, nargs=2, default=(1024, 2048), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.peak_memory:
        peak_memory_child(args.peak_memory, args.weights, tuple(args.size))
        return
    with tempfile.TemporaryDirectory() as tmp:
        weights_dir = Path(tmp) / "b0-150"
        ours, theirs = make_models(weights_dir, num_classes=150)
        runtime = onnx_runtime(ours, Path(tmp) / "b0-150.onnx")
        bench_latency(ours, theirs, runtime, (512, 512), args.runs)
        bench_latency(ours, theirs, runtime, (1024, 2048), args.runs)
        bench_peak_memory(weights_dir, (1024, 2048))
        ours, theirs = make_models(Path(tmp) / "b0-4", num_classes=4)
        bench_training(ours, theirs, args.runs)


if __name__ == "__main__":
    main()
