"""``mhc-bench bench --quick`` writes bench.json and bench.md with the documented keys; floor and ratios."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mhc_bench.bench import floor, steps
from mhc_bench.cli import main

ROW_KEYS = {"variant", "n", "d_model", "path", "step_time_ms", "tokens_per_s", "peak_mem_mb",
            "activation_mb", "ratio_to_baseline", "ratio_of_best", "baseline_step_time_ms"}


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_quick_bench_writes_tables(tmp_path) -> None:
    assert main(["bench", "--quick", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["schema_version"] == 2
    assert data["meta"]["environment"]["torch_threads"] >= 1
    assert _positive(data["copy_bandwidth_gbps"]) and _positive(data["gemm_gflops"])
    rows = data["rows"]
    expected = {(v, n, p) for v in ("hc", "mhc") for n in (1, 4) for p in ("torch", "fast")}
    assert {(r["variant"], r["n"], r["path"]) for r in rows} == {("baseline", 1, "torch"), *expected}
    for row in rows:
        assert ROW_KEYS <= row.keys()
        assert all(_positive(row[k]) for k in ROW_KEYS - {"variant", "path"})
        assert row["mode"] == "eager" and row["baseline_path"] == "torch" and row["compile_s"] is None
        lo, hi = row["ratio_range"]
        assert lo <= hi
        assert row["floor_ratio"] >= 1.0
    base = next(r for r in rows if r["variant"] == "baseline")
    assert base["floor_ms"] == 0.0  # no extra stream traffic in the baseline
    mhc4 = next(r for r in rows if r["variant"] == "mhc" and r["n"] == 4 and r["path"] == "fast")
    assert mhc4["activation_mb"] > base["activation_mb"]  # four streams hold more than one
    assert mhc4["floor_ratio"] > 1.0 and mhc4["extra_over_floor"] == pytest.approx(
        (mhc4["step_time_ms"] - base["step_time_ms"]) / mhc4["floor_ms"])
    assert mhc4["roofline_ms"] == max(mhc4["floor_ms"], mhc4["compute_floor_ms"]) > 0
    (head,) = data["headline"]
    assert head["d_model"] == 32 and head["mhc_ratio"] == pytest.approx(
        min(r["step_time_ms"] for r in rows if r["variant"] == "mhc" and r["n"] == 4)
        / base["step_time_ms"])
    assert {rc["path"] for rc in data["recompute"]} == {"torch", "fast"}
    for rc in data["recompute"]:
        assert rc["on"]["activation_mb"] < rc["off"]["activation_mb"]
        assert 0 < rc["activation_saving"] < 1
    assert {(m["op"], m["path"]) for m in data["micro"]} == {
        (op, p) for op in ("maps", "pre", "post_res") for p in ("torch", "fast")}
    assert all(_positive(m["fwd_ms"]) and _positive(m["fwd_bwd_ms"]) for m in data["micro"])
    assert all(_positive(m["fraction_of_copy_bw"]) for m in data["micro"])
    assert {p["impl"] for p in data["peer"]} == {"peer", "ours/torch", "ours/fast"}
    assert all(_positive(p["fwd_bwd_ms"]) and _positive(p["activation_mb"]) for p in data["peer"])
    md = (tmp_path / "bench.md").read_text()
    for title in ("Headline", "Training step", "Compile cache", "Selective recompute",
                  "Kernel microbenchmarks", "Peer comparison"):
        assert title in md


def test_floor_counts_the_extra_stream_traffic() -> None:
    # (6n - 1) C elements per token and layer; nothing for n = 1 (the baseline's residual).
    assert floor.extra_elements(1, 256) == 0
    assert floor.extra_elements(4, 256) == 23 * 256
    assert floor.extra_bytes_per_step(4, 512, tokens=1024, residual_layers=8) == 23 * 512 * 1024 * 8 * 4
    rows = [{"variant": "mhc", "n": 4, "d_model": 512, "step_time_ms": 120.0, "baseline_step_time_ms": 100.0}]
    floor.add_floor(rows, bandwidth_gbps=10.0, tokens=1024, residual_layers=8)
    (row,) = rows
    assert row["floor_ms"] == pytest.approx(23 * 512 * 1024 * 8 * 4 / 10e9 * 1e3)
    assert row["floor_ratio"] == pytest.approx(1 + row["floor_ms"] / 100.0)
    assert row["extra_over_floor"] == pytest.approx(20.0 / row["floor_ms"])
    assert "roofline_ms" not in row  # no GEMM rate given: the memory floor alone


def test_compute_floor_counts_the_maps_and_the_mixes() -> None:
    # mHC: maps nC -> n^2 + 2n, 2KW forward and 4KW backward; mixes 2C(n^2 + 2n) forward, twice backward.
    assert floor.extra_flops("mhc", 4, 512) == 6 * 2048 * 24 + 6 * 512 * 24
    # HC: each of the n streams C -> n + 2.
    assert floor.extra_flops("hc", 4, 512) == 6 * 4 * 512 * 6 + 6 * 512 * 24
    assert floor.extra_flops("baseline", 1, 512) == 0 and floor.extra_flops("mhc", 1, 512) == 0
    # The roofline is the larger floor: compute at 10 GFLOP/s, memory at a bandwidth so high it vanishes.
    rows = [{"variant": "mhc", "n": 4, "d_model": 512, "step_time_ms": 150.0, "baseline_step_time_ms": 100.0}]
    floor.add_floor(rows, bandwidth_gbps=1e6, tokens=1024, residual_layers=8, gemm_gflops=10.0)
    (row,) = rows
    compute_ms = floor.extra_flops("mhc", 4, 512) * 1024 * 8 / 10e9 * 1e3
    assert row["compute_floor_ms"] == pytest.approx(compute_ms)
    assert row["roofline_ms"] == row["compute_floor_ms"]
    assert row["roofline_ratio"] == pytest.approx(1 + compute_ms / 100.0)
    assert row["extra_over_roofline"] == pytest.approx(50.0 / compute_ms)
    # ... and the memory floor where the bandwidth is the bottleneck.
    floor.add_floor(rows, bandwidth_gbps=1e-3, tokens=1024, residual_layers=8, gemm_gflops=10.0)
    assert rows[0]["roofline_ms"] == rows[0]["floor_ms"] > rows[0]["compute_floor_ms"]


def test_matmul_rate_is_measured() -> None:
    # A square matmul's FLOPs over its time: positive and finite (no number is asserted: timings vary).
    gflops = floor.matmul_gflops(torch.device("cpu"), size=64)
    assert 0 < gflops < float("inf")


def test_each_path_is_compared_with_the_baseline_of_its_mode() -> None:
    def row(variant: str, path: str, ms: float) -> dict:
        return {"variant": variant, "n": 1 if variant == "baseline" else 4, "d_model": 64, "path": path,
                "recompute": 0, "step_time_ms": ms, "step_times_ms": [ms, ms * 1.1], "peak_mem_mb": 1.0}

    rows = [row("baseline", "torch", 100.0), row("baseline", "compile", 80.0), row("mhc", "fast", 120.0),
            row("mhc", "compile", 90.0)]
    steps.add_ratios(rows)
    by_path = {(r["variant"], r["path"]): r for r in rows}
    assert by_path[("mhc", "fast")]["ratio_to_baseline"] == pytest.approx(1.2)
    assert by_path[("mhc", "compile")]["baseline_path"] == "compile"
    assert by_path[("mhc", "compile")]["ratio_to_baseline"] == pytest.approx(90 / 80)
    (head,) = steps.headline(rows)
    assert head["baseline_path"] == "compile" and head["mhc_path"] == "compile"
    assert head["mhc_ratio"] == pytest.approx(90 / 80) and head["mhc_fast_eager_ratio"] == pytest.approx(1.2)
