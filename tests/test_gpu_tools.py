"""GPU readiness without a GPU: the AOT compile table, the cost model and ``make gpu-check``.

The AOT test compiles every kernel once for sm_90 and once for sm_80 with the
real compiler (in worker processes without the interpreter) and checks the
resource numbers read from the cubins against the budgets of issue 12.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from mhc_bench import cli
from mhc_bench.gpu import command, cost, shapes
from mhc_bench.gpu.targets import ARCHS, DEFAULT_ARCHS
from mhc_bench.paths import PROJECT_ROOT


def test_kernels_command_imports_no_torch() -> None:
    """``mhc-bench kernels --help`` stays fast: the command module pulls in neither torch nor triton."""
    code = ("import sys, mhc_bench.cli as c; p = c.build_parser('kernels'); "
            "assert 'torch' not in sys.modules and 'triton' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PROJECT_ROOT)
    assert tuple(command.DEFAULT_ARCHS) == DEFAULT_ARCHS
    assert set(DEFAULT_ARCHS) <= set(command.ARCH_CHOICES) <= set(ARCHS)


def test_aot_ci_subset_within_budget(tmp_path: Path) -> None:
    rc = cli.main(["kernels", "aot", "--subset", "ci", "--out", str(tmp_path)])
    payload = json.loads((tmp_path / "aot.json").read_text())
    rows = payload["rows"]
    assert rc == 0
    assert len(rows) == 2 * 8  # (target, shape) pairs x kernels
    assert {(r["arch"], r["n"]) for r in rows} == {(90, 4), (80, 3)}
    assert {r["kernel"] for r in rows} == set(__import__("mhc_kernels.catalog").catalog.KERNELS)
    for r in rows:
        where = f"sm_{r['arch']} {r['kernel']} n={r['n']}"
        assert r["ok"], where + ": " + r.get("error", "")
        assert 0 < r["regs"] <= 255 and r["regs"] == r["ptxas_regs"], where
        assert r["spill_stores"] == r["spill_loads"] == 0, where
        assert r["smem"] <= ARCHS[r["arch"]].smem_limit, where
        assert r["within_budget"] and r["occupancy_warps"] > 0, where
    proj = [r for r in rows if r["kernel"] == "maps_fwd_proj"]
    assert all(r["smem"] > 8192 for r in proj)  # the pipelined projection stages tiles in shared memory
    text = (tmp_path / "aot.json").read_text() + (tmp_path / "aot.md").read_text()
    assert str(PROJECT_ROOT) not in text and str(Path.home()) not in text
    assert "## Paper shape: n = 4, C = 4096" in text


def test_shapes_cover_the_paper_grid_and_the_profiles() -> None:
    paper = shapes.paper_shapes()
    assert len(paper) == 4 * 4 * 2
    found = shapes.all_shapes(PROJECT_ROOT / "workflows" / "config")
    # gpu-small trains mHC n = 4 at d_model 512 under bf16-mixed (fp32 stream, bf16 layer output).
    assert shapes.Shape(4, 512, "fp32", "bf16", 32 * 512) in found
    assert all(s in found for s in paper)


def test_cost_model_counts_the_paper_reads_and_predicts() -> None:
    a = cost.Assumptions(n=4, hidden=64, tokens_per_call=1, stream_dtype="fp32", y_dtype="bf16")
    by_name = {k.kernel: k for k in cost.layer_kernels(a)}
    # post+res reads n*C + C and writes n*C per token (the paper's (n+1)C reads), plus the maps.
    assert by_name["post_res_fwd"].bytes == (16 + 4) * 4 + 256 * 4 + 64 * 2 + 256 * 4
    assert by_name["pre_fwd"].bytes == 4 * 4 + 256 * 4 + 64 * 4
    result = cost.paper_prediction()
    assert "predicted" in result["label"] and result["paper_overhead_pct"] == 6.7
    for name in cost.GPUS:
        p = result["predicted"][name]["overhead_pct"]
        assert 0 < p < 200
        s = result["sensitivity"][name]
        assert s["mfu=0.3"] < s["mfu=0.4"] < s["mfu=0.5"]  # a faster baseline makes mHC relatively dearer
        assert s["mlp_factor=1.0"] > s["mlp_factor=2.0"] > s["mlp_factor=4.0"]
        assert result["variants"][name]["bf16 stream"] < p
    # A100's lower FLOPs-to-bandwidth ratio hides more of the bandwidth-bound stream ops.
    pct = {name: p["overhead_pct"] for name, p in result["predicted"].items()}
    assert pct["A100-SXM4-80GB"] < pct["H100-SXM5-80GB"]


def test_model_command_writes_json_and_markdown(tmp_path: Path) -> None:
    assert cli.main(["kernels", "model", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "model.json").read_text())
    assert set(data["predicted"]) == set(cost.GPUS)
    assert "Predicted C9 overhead" in (tmp_path / "model.md").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: gpu-check would run")
def test_gpu_check_fails_fast_without_cuda(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "mhc_bench.cli", "kernels", "gpu-check", "--out",
                           str(tmp_path / "gc")], capture_output=True, text=True, cwd=PROJECT_ROOT)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode == 2
    assert len(lines) == 1 and lines[0].startswith("gpu-check: no CUDA"), lines
    assert not (tmp_path / "gc").exists()


def test_make_gpu_check_runs_the_command() -> None:
    out = subprocess.run(["make", "-n", "gpu-check"], capture_output=True, text=True, cwd=PROJECT_ROOT).stdout
    assert "mhc-bench kernels gpu-check --out results/gpu-check" in out


def test_gpu_check_plan(tmp_path: Path) -> None:
    """The steps gpu-check would run on an sm_90 machine, and the short cell's config."""
    from mhc_bench.cellconfig import load_cell_config
    from mhc_bench.gpu import check

    plan = check.steps(tmp_path, {"cc": 90})
    names = [name for name, _, _ in plan]
    assert names == ["parity", "bench", "aot", "dryrun-baseline", "dryrun-mhc", "cell"]
    cmds = {name: " ".join(cmd) for name, cmd, _ in plan}
    assert "tests/test_kernels.py" in cmds["parity"] and dict(plan[0][2])["TRITON_INTERPRET"] == "0"
    assert "--paths torch compile triton --d-model 512 1024" in cmds["bench"]
    assert "--archs 90" in cmds["aot"] and "--dry-run" in cmds["dryrun-mhc"]
    cfg = load_cell_config(tmp_path / "cell" / "config.yaml")
    assert cfg.model.variant == "mhc" and cfg.model.n_streams == 4 and cfg.train.precision == "bf16-mixed"
    assert cfg.train.steps == check.CELL_STEPS and cfg.data.train_tokens < 10_000_000  # short, small budget
    assert dict(plan[-1][2])["HF_HUB_OFFLINE"] == "0"
    assert yaml.safe_load((tmp_path / "cell" / "config.yaml").read_text())["profile"] == "gpu-small"
    assert check.slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
