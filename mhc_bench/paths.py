"""Where things live: the project's tool caches and the user-level data cache.

Downloaded data (sdists, extracted files) goes to a *user* cache so that fresh
clones and CI reuse it; tool caches (inductor, triton, HF, matplotlib) go under
the project's ignored ``.cache/`` so they never leak into the home directory.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def data_cache_dir() -> Path:
    """User cache for downloaded data: ``$MHC_BENCH_CACHE`` or ``$XDG_CACHE_HOME/mhc-bench``."""
    override = os.environ.get("MHC_BENCH_CACHE")
    if override:
        root = Path(override)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = Path(xdg) / "mhc-bench"
    root.mkdir(parents=True, exist_ok=True)
    return root


def tool_cache_dir() -> Path:
    """Project-local cache for compilers and libraries (ignored by git)."""
    root = Path(os.environ.get("MHC_BENCH_TOOL_CACHE", PROJECT_ROOT / ".cache"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def configure_environment() -> None:
    """Point tool caches into ``.cache/`` and switch off telemetry and hub access.

    Called once by the CLI and by tests before heavy imports; existing values win
    so users can still override any of them.
    """
    cache = tool_cache_dir()
    defaults = {
        "TORCHINDUCTOR_CACHE_DIR": cache / "inductor",
        "TRITON_CACHE_DIR": cache / "triton",
        "HF_HOME": cache / "hf",
        "HF_DATASETS_CACHE": cache / "hf" / "datasets",
        "MPLCONFIGDIR": cache / "matplotlib",
        "MPLBACKEND": "Agg",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "DO_NOT_TRACK": "1",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, str(value))
