"""Environment capture and the bench.json / bench.md writers."""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path
from typing import Any

import torch

from mhc_bench.provenance import cpu_model


def environment(device: torch.device) -> dict[str, Any]:
    """Hardware, versions and thread settings: enough to tell two runs apart."""
    import importlib.metadata as md

    versions = {}
    for pkg in ("torch", "triton", "numpy", "hyper-connections", "mhc-bench", "lightning", "mlflow"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    env: dict[str, Any] = {
        "device": str(device), "cpu": cpu_model(), "platform": platform.platform(),
        "processor": platform.processor(),
        "python": platform.python_version(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
        "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None, "versions": versions,
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def _clean(value: Any) -> Any:
    """JSON without NaN/inf (they become null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, list | tuple):
        return "–".join(_fmt(x) for x in v)
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def _table(rows: list[dict], cols: list[str]) -> list[str]:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return [*lines, ""]


def _headline_columns(headline: list[dict[str, Any]]) -> list[str]:
    """The fixed columns, then each timed variant's (``<variant>_path``, ``_ms``, ``_ratio``, eager ratio)."""
    timed = sorted({k[: -len("_ratio")] for row in headline for k in row
                    if k.endswith("_ratio") and not k.endswith("_fast_eager_ratio")})
    return ["d_model", "n", "baseline_path", "baseline_ms",
            *(f"{v}_{part}" for v in timed for part in ("path", "ms", "ratio", "fast_eager_ratio"))]


def write_outputs(out: Path, result: dict[str, Any]) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "bench.json", out / "bench.md"
    json_path.write_text(json.dumps(_clean(result), indent=2) + "\n")
    env = result["meta"]["environment"]
    md = [
        "# mhc-bench overhead benchmark", "",
        f"Device `{env['device']}`, torch {env['versions']['torch']}, {env['torch_threads']} threads, "
        f"load average at start {env['load_avg']}. Command: `{result['meta']['command']}`.", "",
        "## Headline: every variant on its best path over the baseline on its best path", "",
        *_table(result.get("headline", []), _headline_columns(result.get("headline", []))),
        "## Training step (forward + backward + AdamW)", "",
        "Each row against the baseline of its own mode (`baseline_path`); `ratio_range` spans the "
        "per-repeat ratios; `floor_ratio` is what the memory floor of the extra stream ops predicts, "
        f"`extra_over_floor` the measured extra time over that floor (copy bandwidth "
        f"{_fmt(result.get('copy_bandwidth_gbps'))} GB/s); `roofline_ratio` and `extra_over_roofline` "
        "the same for the larger of that floor and the compute floor (the extra FLOPs, mostly the maps' "
        f"projection, at the square-matmul rate, {_fmt(result.get('gemm_gflops'))} GFLOP/s).", "",
        *_table(result["rows"], ["variant", "n", "d_model", "path", "step_time_ms", "baseline_path",
                                 "ratio_to_baseline", "ratio_range", "ratio_of_best", "floor_ratio",
                                 "extra_over_floor", "roofline_ratio", "extra_over_roofline",
                                 "compile_s", "tokens_per_s", "peak_mem_mb",
                                 "activation_mb"]),
        "## Compile cache (two fresh processes, one new inductor cache)", "",
        *_table(result.get("compile_cache", []), ["variant", "n", "d_model", "cold_compile_s",
                                                  "warm_compile_s", "saving", "cold_fx_graph_misses",
                                                  "warm_fx_graph_hits", "warm_fx_graph_misses", "step_s"]),
        "## Selective recompute (mHC, off vs L_r*)", "",
        *_table([{**r, "off_ms": r["off"]["step_time_ms"], "on_ms": r["on"]["step_time_ms"],
                  "off_act_mb": r["off"]["activation_mb"], "on_act_mb": r["on"]["activation_mb"]}
                 for r in result["recompute"]],
                ["d_model", "n", "path", "block", "off_ms", "on_ms", "time_ratio", "off_act_mb",
                 "on_act_mb", "activation_saving"]),
        "## Kernel microbenchmarks", "",
        f"Copy bandwidth: {_fmt(result['copy_bandwidth_gbps'])} GB/s.", "",
        *_table(result["micro"], ["op", "n", "d_model", "tokens", "path", "fwd_ms", "fwd_bwd_ms",
                                  "fwd_gbps", "fraction_of_copy_bw"]),
        "## Peer comparison (one mHC layer, forward + backward)", "",
        "`branch_ms`: the shared pre-norm MLP alone; `overhead_ms`: the layer minus the branch.", "",
        *_table(result["peer"], ["impl", "n", "d_model", "tokens", "fwd_bwd_ms", "time_ratio_to_peer",
                                 "branch_ms", "overhead_ms", "overhead_ratio_to_peer", "activation_mb",
                                 "mem_ratio_to_peer"]),
        *[f"Note: {note}" for note in result["meta"]["notes"]],
    ]
    md_path.write_text("\n".join(md) + "\n")
    return json_path, md_path
