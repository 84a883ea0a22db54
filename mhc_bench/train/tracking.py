"""MLflow bookkeeping of a cell: one run per cell (reused on resume), tags, params, artifacts.

The run is created here, before training, and its id saved in ``<cell>/run.json``;
Lightning's ``MLFlowLogger`` then attaches to it with ``run_id=...``. A resumed
cell finds ``run.json`` and logs into the same run, so a kill-and-resume never
leaves a second run behind. SQLite stores shared by parallel cells can answer
"database is locked": every write that creates something is retried briefly.
"""

from __future__ import annotations

import json
import os
import platform
import random
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from mhc_bench.paths import PROJECT_ROOT
from mhc_bench.train.config import CellConfig, flatten

RUN_FILE = "run.json"
T = TypeVar("T")


@dataclass(frozen=True)
class RunRef:
    """Where a cell's MLflow run lives."""

    run_id: str
    tracking_uri: str
    experiment: str
    experiment_id: str


def retry_locked(fn: Callable[[], T], tries: int = 8) -> T:
    """Call ``fn``, retrying with jittered back-off while SQLite says the database is locked."""
    for attempt in range(tries):
        try:
            return fn()
        except Exception as err:  # MLflow wraps sqlite errors in several exception types
            transient = "database is locked" in str(err) or "already exists" in str(err)
            if not transient or attempt == tries - 1:
                raise
            time.sleep(0.2 * 2**attempt * (0.5 + random.random()))
    raise AssertionError("unreachable")


def default_artifact_location(tracking_uri: str) -> str | None:
    """``<db dir>/mlartifacts`` for a SQLite store, so artifacts never land in the current directory."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    db = Path(tracking_uri[len("sqlite:///"):])
    return (db.resolve().parent / "mlartifacts").as_uri()


def _client(tracking_uri: str) -> Any:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.tracking import MlflowClient

    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri[len("sqlite:///"):]).resolve().parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=tracking_uri)


def ensure_experiment(tracking_uri: str, name: str, artifact_location: str | None = None) -> str:
    """The experiment's id, creating the store and the experiment if needed (race-safe)."""
    client = _client(tracking_uri)
    location = artifact_location or default_artifact_location(tracking_uri)

    def get_or_create() -> str:
        found = client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                client.restore_experiment(found.experiment_id)
            return found.experiment_id
        return client.create_experiment(name, artifact_location=location)

    return retry_locked(get_or_create)


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


def hardware() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cpus)"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_tags(cfg: CellConfig, cid: str, chash: str) -> dict[str, str]:
    import lightning
    import mlflow
    import torch

    return {
        "cell_id": cid, "config_hash": chash, "git_sha": git_sha(),
        "variant": cfg.model.residual, "n": str(cfg.model.n_streams), "seed": str(cfg.train.seed),
        "d_model": str(cfg.model.d_model), "n_layer": str(cfg.model.n_layer),
        "profile": cfg.profile or "", "name": cfg.name or "",
        "torch_version": torch.__version__, "lightning_version": lightning.__version__,
        "mlflow_version": mlflow.__version__, "torch_threads": str(torch.get_num_threads()),
        "hardware": hardware(), "python": platform.python_version(),
    }


def load_run_ref(cell_dir: Path) -> RunRef | None:
    try:
        return RunRef(**json.loads((cell_dir / RUN_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def ensure_run(cfg: CellConfig, cell_dir: Path, cid: str, chash: str) -> RunRef:
    """The cell's run: the one in ``run.json`` if it is in this store, else a new one (params logged)."""
    uri = cfg.tracking.resolved_uri()
    existing = load_run_ref(cell_dir)
    if existing is not None and existing.tracking_uri == uri:
        return existing
    from mlflow.entities import Param

    experiment_id = ensure_experiment(uri, cfg.tracking.experiment, cfg.tracking.artifact_location)
    client = _client(uri)
    run = retry_locked(lambda: client.create_run(experiment_id, run_name=cid, tags=run_tags(cfg, cid, chash)))
    params = flatten(cfg.model_dump(mode="json", exclude={"tracking"}))
    batch = [Param(k, json.dumps(v) if isinstance(v, list | dict) else str(v)) for k, v in params.items()]
    for start in range(0, len(batch), 100):  # MLflow caps params per batch at 100
        retry_locked(lambda s=start: client.log_batch(run.info.run_id, params=batch[s : s + 100]))
    ref = RunRef(run.info.run_id, uri, cfg.tracking.experiment, experiment_id)
    cell_dir.mkdir(parents=True, exist_ok=True)
    (cell_dir / RUN_FILE).write_text(json.dumps(asdict(ref), indent=2) + "\n")
    return ref


def make_logger(ref: RunRef) -> Any:
    """Lightning's MLFlowLogger attached to the existing run (explicit SQLite URI, never ``file:``)."""
    from lightning.pytorch.loggers import MLFlowLogger

    return MLFlowLogger(experiment_name=ref.experiment, tracking_uri=ref.tracking_uri, run_id=ref.run_id,
                        log_model=False)


def log_reprobe(ref: RunRef, gains: dict[str, float], step: int, probe_version: int) -> None:
    """Overwrite-by-newer-timestamp the final gain metrics of a re-probed cell and tag the probe version."""
    from mlflow.entities import Metric, RunTag

    client = _client(ref.tracking_uri)
    now = int(time.time() * 1000)
    metrics = [Metric(f"final/{k}", float(v), now, step) for k, v in gains.items() if v is not None]
    retry_locked(lambda: client.log_batch(ref.run_id, metrics=metrics,
                                          tags=[RunTag("probe_version", str(probe_version))]))


def log_final(ref: RunRef, metrics: dict[str, Any], step: int, artifacts: list[Path], status: str) -> None:
    """Final scalar metrics, the cell's files as artifacts, and the outcome as a tag."""
    from mlflow.entities import Metric, RunTag

    client = _client(ref.tracking_uri)
    now = int(time.time() * 1000)
    scalars = [Metric(f"final/{k}", float(v), now, step) for k, v in metrics.items()
               if isinstance(v, int | float) and not isinstance(v, bool)]
    retry_locked(lambda: client.log_batch(ref.run_id, metrics=scalars, tags=[RunTag("status", status)]))
    for path in artifacts:
        retry_locked(lambda p=path: client.log_artifact(ref.run_id, str(p)))
    retry_locked(lambda: client.set_terminated(ref.run_id, "FINISHED"))
