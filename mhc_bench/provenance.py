"""Where a result came from: git revision, hardware, library versions (tags on every MLflow run)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from mhc_bench.paths import PROJECT_ROOT


def git_sha() -> str:
    """HEAD of the project checkout (``+dirty`` with uncommitted tracked changes), or ``unknown``."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_model() -> str:
    """The CPU's model name (``platform.processor()`` is empty on most Linux systems)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> str:
    """The GPU's name, else the CPU model with its core count."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{cpu_model()} ({os.cpu_count()} cpus)"


def versions() -> dict[str, str]:
    import lightning
    import mlflow
    import torch

    return {"torch_version": torch.__version__, "lightning_version": lightning.__version__,
            "mlflow_version": mlflow.__version__, "python": platform.python_version()}
