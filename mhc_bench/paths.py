"""Where things live: the project checkout, its tool caches and the user-level data cache.

The library runs from a checkout (it needs the ``Snakefile`` and ``workflows/``): an
editable install finds it next to the package; a regular install finds it through
``$MHC_BENCH_ROOT`` or by looking upwards from the working directory, and commands that
need it fail with one clear line when there is none (:func:`require_checkout`).

A copied or moved checkout is its own: ``make`` rebuilds a venv built for another folder,
and the CLI refuses to run a venv of one checkout inside another (it would read and write
the other one's results) in one line (:func:`check_same_checkout`).

Downloaded data (sdists, extracted files) goes to a *user* cache so that fresh
clones and CI reuse it; tool caches (inductor, triton, HF, matplotlib) go under
the project's ignored ``.cache/`` so they never leak into the home directory.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT_ENV = "MHC_BENCH_ROOT"
_MARKERS = ("Snakefile", "workflows/config")


def _is_checkout(path: Path) -> bool:
    return all((path / marker).exists() for marker in _MARKERS)


def find_project_root() -> Path | None:
    """``$MHC_BENCH_ROOT``, else the folder above the package, else the nearest checkout above the cwd."""
    if os.environ.get(ROOT_ENV):
        return Path(os.environ[ROOT_ENV]).resolve()
    beside = Path(__file__).resolve().parent.parent
    if _is_checkout(beside):
        return beside
    here = Path.cwd().resolve()
    return next((p for p in (here, *here.parents) if _is_checkout(p)), None)


PROJECT_ROOT = find_project_root() or Path(__file__).resolve().parent.parent


def require_checkout() -> Path:
    """The checkout, or a user error saying how to point at one (a regular install outside it)."""
    from mhc_bench.errors import UserError

    if not _is_checkout(PROJECT_ROOT):
        raise UserError(f"mhc-bench needs its project checkout (Snakefile, workflows/) and found none at "
                        f"{PROJECT_ROOT}: run from inside the checkout or set {ROOT_ENV}=<checkout>")
    return PROJECT_ROOT


def check_same_checkout(cwd: Path | None = None) -> None:
    """Refuse (one line) when the working directory is inside a checkout other than the one this
    installation belongs to: a venv copied or moved with its checkout still points at the original."""
    from mhc_bench.errors import UserError

    if os.environ.get(ROOT_ENV):
        return
    here = (cwd or Path.cwd()).resolve()
    inside = next((p for p in (here, *here.parents) if _is_checkout(p)), None)
    if inside is not None and inside != PROJECT_ROOT.resolve():
        raise UserError(f"this mhc-bench is installed for the checkout {PROJECT_ROOT}, but you are in the "
                        f"checkout {inside} (copied or moved?): run `make venv` there to give it its own "
                        f"venv, then use {inside / '.venv' / 'bin' / 'mhc-bench'}")


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


def configure_environment(offline: bool = True) -> None:
    """Point tool caches into ``.cache/`` and switch off telemetry and (``offline``) hub access.

    Called once by the CLI and by tests before heavy imports; existing values win
    so users can still override any of them. ``mhc-bench lm-eval`` leaves the hub reachable:
    its users may ask for lm-eval's hub tasks.
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
    if not offline:
        for key in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
            defaults.pop(key)
    for key, value in defaults.items():
        os.environ.setdefault(key, str(value))
