"""bench.bench_model's design-variant flags build the configs they name, and the attention-cost sweep's peak-memory
process, capped in address space, reports running out of memory instead of crashing."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from bench import bench_model
from bench.bench_model import (
    attention_cost,
    main,
    parse_args,
    segformer_models,
    segformer_peak_memory,
    sweep_peak_memory,
    variant_config,
    variant_flags,
    variants_of,
)
from segformer import SegFormer, preset


def test_no_variant_flags_keep_the_transformers_comparison() -> None:
    args = parse_args([])
    assert variants_of(args) == {} and variant_config({}) == preset("b0")
    assert args.runs == 10 and not args.sr_sweep


def test_variant_flags_build_the_configs_they_name() -> None:
    argv = ["--patch-merging", "max_pool", "--ffn-activations", "2", "--ffn-padding", "reflect", "--mlp-ratio", "6.5"]
    argv += ["--token-mixer", "dwconv", "--decoder", "fpn", "--decoder-dim", "96", "--sr-ratios", "4", "2", "1", "1"]
    variants = variants_of(parse_args(argv))
    expected = {
        "patch_merging": "max_pool",
        "sr_ratios": (4, 2, 1, 1),
        "ffn_activations": 2,
        "ffn_padding": "reflect",
        "mlp_ratio": 6.5,
        "token_mixer": "dwconv",
        "decoder": "fpn",
        "decoder_dim": 96,
    }
    assert variants == expected
    config, paper = variant_config(variants), preset("b0")
    assert {name: getattr(config, name) for name in expected} == expected
    assert replace(config, **{name: getattr(paper, name) for name in expected}) == paper  # the rest is B0's
    model = segformer_models({"variant": config}, num_classes=4)["variant"]
    block = model.encoder.blocks[0][0]
    assert model.config == config and block.token_mixer == "dwconv" and block.ffn.fc1.out_features == 32 * 6.5
    assert variants_of(parse_args(variant_flags(variants))) == variants  # the flags a child process is given
    with pytest.raises(SystemExit):
        parse_args(["--ffn-padding", "circular"])


def test_sr_ratios_1_1_1_1_is_full_attention() -> None:
    config = variant_config(variants_of(parse_args(["--sr-ratios", "1", "1", "1", "1"])))
    model = segformer_models({"full": config}, num_classes=4)["full"].eval()
    attention = model.encoder.blocks[0][0].attention
    assert attention.sr_ratio == 1 and not hasattr(attention, "reduction")
    with torch.inference_mode():
        _, maps = model(torch.randn(1, 3, 64, 64), return_attentions=True)
    assert maps[0][0].shape == (1, 1, 256, 256)  # every one of the 16x16 stage-1 tokens is a key
    cost = attention_cost(model, (64, 64))
    assert (cost["stage1_queries"], cost["stage1_keys"], cost["stage1_heads"]) == (256, 256, 1)
    paper = attention_cost(SegFormer(preset("b0"), 4), (1024, 1024))
    assert (paper["stage1_queries"], paper["stage1_keys"]) == (256 * 256, 32 * 32)
    assert paper["stage1_attention_mib"] == 256 * 256 * 32 * 32 * 4 / 2**20


def test_sweep_flags() -> None:
    assert parse_args(["--sr-sweep"]).runs == 3
    with pytest.raises(SystemExit):
        parse_args(["--sr-sweep", "--sr-ratios", "1", "1", "1", "1"])


def test_json_out_records_the_cases_the_command_and_the_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The transformers comparison's JSON file: its cases as printed, with the command that made it, the runs, the
    threads, the load average and the CPU's model name from /proc/cpuinfo (the comparison itself stubbed out)."""
    cases = [
        {"case": "b0 384x512 eval", "metric": "latency_s", "ours": 0.1, "onnxruntime": 0.1, "ratio_onnxruntime": 1}
    ]
    monkeypatch.setattr(bench_model, "compare_with_transformers", lambda runs: cases if runs == 2 else [])
    argv = ["--runs", "2", "--json-out", str(tmp_path / "bench-model.json")]
    main(argv)
    data = json.loads((tmp_path / "bench-model.json").read_text())
    assert data["cases"] == cases and data["command"] == "python -m bench.bench_model " + " ".join(argv)
    assert data["runs"] == 2 and data["threads"] == torch.get_num_threads() and data["torch"] == torch.__version__
    model_names = [row for row in Path("/proc/cpuinfo").read_text().splitlines() if row.startswith("model name")]
    assert data["cpu"] == model_names[0].partition(":")[2].strip() and len(data["load_average"]) == 3


def test_capped_child_reports_out_of_memory() -> None:
    """A cap below what the process already maps: the forward's allocations fail inside torch, which is reported."""
    result = segformer_peak_memory({}, (128, 128), num_classes=4, cap_gib=0.5)
    assert result["out_of_memory"] and result["peak_memory_mib"] is None
    assert result["error"].startswith(("RuntimeError", "MemoryError"))


def test_capped_child_reports_a_peak_under_a_normal_cap() -> None:
    """Full attention at 256x256, where every block's attention maps together take 147 MiB: a forward that keeps
    them (return_attentions) peaks above that much, while the plain forward, whose fused kernel never holds a map,
    peaks below half of it. A peak taken from the wrong counter or the wrong baseline misses one or the other."""
    variant, size = {"sr_ratios": (1, 1, 1, 1)}, (256, 256)
    maps_mib = attention_cost(SegFormer(variant_config(variant), 4), size)["attention_maps_mib"]
    assert maps_mib == 146.8
    plain = segformer_peak_memory(variant, size, num_classes=4, cap_gib=12)
    keeping = segformer_peak_memory(variant, size, num_classes=4, cap_gib=12, attention_maps=True)
    for result in (plain, keeping):
        assert not result["out_of_memory"] and result["error"] is None
    assert 0 < plain["peak_memory_mib"] < maps_mib / 2 < maps_mib < keeping["peak_memory_mib"]


def test_sweep_skips_the_sizes_after_memory_ran_out() -> None:
    """A path that ran out of memory at a smaller size is not measured again (no process is started)."""
    sr = (1, 1, 1, 1)
    ran_out = {(sr, "forward"): 512, (sr, "attention_maps"): 256}
    result = sweep_peak_memory(sr, 1024, cap_gib=12, ran_out=ran_out)
    assert result["forward"] == {"status": "skipped", "note": "skipped: out of memory under the 12 GiB cap at 512x512"}
    assert result["attention_maps"]["status"] == "skipped" and "at 256x256" in result["attention_maps"]["note"]
