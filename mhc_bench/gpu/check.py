"""``make gpu-check``: the one command to run on the first CUDA machine.

Writes everything under ``<out>/<device>/`` (e.g. ``results/gpu-check/nvidia-h100-80gb-hbm3/``):

1. ``device.json``: the GPU, its compute capability and the software versions;
2. ``parity/``: the kernel parity tests (``tests/test_kernels*.py``) compiled for
   the GPU, without the interpreter (``MHC_KERNELS_TEST_DEVICE=cuda``);
3. ``bench/``: ``mhc-bench bench --paths torch compile triton`` at two widths;
4. ``aot/``: the ahead-of-time table for this GPU's architecture, to set against
   the committed one (``results/kernels/aot.md``);
5. ``dryrun/``: a Snakemake dry run of two gpu-small cells (baseline, mHC);
6. ``cell/``: one short real gpu-small mHC cell (50 steps, Triton kernels, bf16-mixed,
   its data budget cut to what it reads; needs the Hugging Face Hub);

and ``summary.json`` / ``summary.md`` (command, exit status and time per step).
Every step runs even if an earlier one fails; the exit status is 1 if any failed.
Without CUDA it stops at once with one line and exit status 2.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mhc_bench.paths import PROJECT_ROOT

BENCH_WIDTHS = ("512", "1024")  # gpu-small's d_model and the next width its bench uses
CELL_STEPS = 50
CELL_VAL_BATCHES = 4
HUB_ON = {"HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0"}  # gpu-small streams FineWeb-Edu from the Hub


def no_cuda_reason() -> str | None:
    """Why this machine cannot run the check (one line), or None when a CUDA device is usable."""
    import torch

    if torch.version.cuda is None:
        return (f"gpu-check: no CUDA here (torch {torch.__version__} is a CPU build); run it on a machine "
                "with an NVIDIA GPU and a CUDA build of torch")
    if not torch.cuda.is_available():
        return ("gpu-check: no CUDA device visible (torch.cuda.is_available() is False); "
                "run it on a GPU machine")
    return None


def device_info() -> dict[str, Any]:
    import importlib.metadata as md

    import torch

    props = torch.cuda.get_device_properties(0)
    versions = {}
    for pkg in ("torch", "triton", "mhc-bench"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return {"name": props.name, "capability": f"{props.major}.{props.minor}",
            "cc": props.major * 10 + props.minor, "sm_count": props.multi_processor_count,
            "memory_gib": round(props.total_memory / 2**30, 1), "cuda": torch.version.cuda,
            "versions": versions}


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mhc_bench.cli", *args]


def _gpu_small_cells() -> tuple[str, str, dict[str, Any]]:
    """Ids of the gpu-small reference (baseline) cell and of its first cell whose variant has fused
    Triton maps (mHC), and that cell's config."""
    from mhc_bench import variants
    from mhc_bench.workflow.grid import profile_cells

    cells = profile_cells("gpu-small")
    reference = variants.reference().name
    base = next(cid for cid, c in cells.items() if c["grid"]["variant"] == reference)
    mhc_id, mhc = next((cid, c) for cid, c in cells.items()
                       if "triton" in variants.get(c["grid"]["variant"]).implementations)
    return base, mhc_id, mhc


def steps(out: Path, info: dict[str, Any]) -> list[tuple[str, list[str], dict[str, str]]]:
    """``(name, command, extra environment)`` of every step, in order."""
    from mhc_bench.workflow.grid import write_cell_yaml

    base, mhc_id, mhc = _gpu_small_cells()
    cell_dir = out / "cell"
    # Relative to the project root (the steps' working directory) when --out is relative.
    tracking = {"tracking_uri": f"sqlite:///{cell_dir / 'mlflow.db'}", "experiment": "gpu-check"}
    train = {**mhc["train"], "steps": CELL_STEPS, "val_batches": CELL_VAL_BATCHES}
    tokens_per_step = int(train["batch_size"]) * int(mhc["model"]["seq_len"])
    # A short cell streams only what it reads (twice over), not the profile's 160 M-token budget.
    data = {**mhc["data"], "train_tokens": 2 * CELL_STEPS * tokens_per_step,
            "val_tokens": 2 * CELL_VAL_BATCHES * tokens_per_step}
    write_cell_yaml({**mhc, "train": train, "data": data, "tracking": tracking}, cell_dir / "config.yaml")
    parity_env = {"TRITON_INTERPRET": "0", "MHC_KERNELS_TEST_DEVICE": "cuda"}
    result = [
        ("parity", [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    "tests/test_kernels.py", "tests/test_kernels_tiling.py",
                    f"--junitxml={out / 'parity' / 'junit.xml'}"], parity_env),
        ("bench", _cli("bench", "--paths", "torch", "compile", "triton", "--d-model", *BENCH_WIDTHS,
                       "--n", "1", "4", "--out", str(out / "bench")), {}),
    ]
    if info["cc"] in (80, 86, 89, 90, 100):
        result.append(("aot", _cli("kernels", "aot", "--archs", str(info["cc"]), "--out", str(out / "aot")),
                       {}))
    result += [
        ("dryrun-baseline", _cli("cell", base, "--profile", "gpu-small", "--dry-run"), {}),
        ("dryrun-mhc", _cli("cell", mhc_id, "--profile", "gpu-small", "--dry-run"), {}),
        ("cell", _cli("train", "--config", str(cell_dir / "config.yaml"), "--out", str(cell_dir)), HUB_ON),
    ]
    return result


def run_check(out_root: Path, log: Callable[[str], None]) -> int:
    """Run every step; one line and exit status 2 when there is no CUDA device."""
    reason = no_cuda_reason()
    if reason is not None:
        print(reason, file=sys.stderr)
        return 2
    info = device_info()
    out = out_root / slug(info["name"])
    (out / "parity").mkdir(parents=True, exist_ok=True)
    (out / "device.json").write_text(json.dumps(info, indent=1) + "\n")
    log(f"{info['name']} (sm_{info['cc']}, {info['sm_count']} SMs) -> {out}")
    records = []
    for name, cmd, env in steps(out, info):
        log_path = out / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log(f"{name}: {' '.join(cmd[2:] if cmd[1] == '-m' else cmd)}")
        started = time.time()
        with log_path.open("w") as fh:
            rc = subprocess.call(cmd, cwd=PROJECT_ROOT, stdout=fh, stderr=subprocess.STDOUT,
                                 env={**os.environ, **env})
        records.append({"step": name, "command": " ".join(cmd[1:]), "env": env, "rc": rc,
                        "seconds": round(time.time() - started, 1), "log": str(log_path.relative_to(out))})
        log(f"{name}: {'ok' if rc == 0 else f'FAILED (exit {rc}), see {log_path}'}")
    failed = [r["step"] for r in records if r["rc"] != 0]
    summary = {"device": info, "steps": records, "failed": failed}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    lines = [f"# gpu-check on {info['name']} (sm_{info['cc']})", "", "| step | exit | seconds | log |",
             "|---|---|---|---|"]
    lines += [f"| {r['step']} | {r['rc']} | {r['seconds']} | `{r['log']}` |" for r in records]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    log(f"summary: {out / 'summary.md'}; failed steps: {', '.join(failed) or 'none'}")
    return 1 if failed else 0
