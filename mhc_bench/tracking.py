"""MLflow for every stage: one URI rule, one store initialiser, one retry, one run per cell.

- **Which store** (:func:`resolve_uri`, the only place that decides): the URI a
  profile or cell config names explicitly, else ``$MLFLOW_TRACKING_URI`` (point
  every stage of a default profile at a server), else
  ``sqlite:///<results>/<profile>/mlflow.db`` next to the cells (project-relative,
  so a results folder is self-contained).
- **Creating a SQLite store** happens under a file lock (``<db>.lock``): two
  processes opening a new store at once race on the schema migration
  (alembic's ``_alembic_tmp_experiments already exists``).
- **Relocatable stores:** MLflow writes absolute artifact paths; a store under
  the working directory gets them rewritten relative to it (the DAG, ``make``
  and ``mlflow ui`` run from the project root, or from ``--directory``), so a
  committed ``mlflow.db`` names no machine's folders and its artifacts stay
  reachable in any clone. URIs recorded in results are relative the same way.
- **One run per cell:** created before training, its id kept in the cell's
  ``run.json``; a resumed cell logs into the same run, and the steps it
  replays (between the last checkpoint and the kill) are not logged twice.
- Every write retries while SQLite says "database is locked".
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock

ENV_URI = "MLFLOW_TRACKING_URI"
STORE_FILE = "mlflow.db"
ARTIFACT_DIR = "mlartifacts"
T = TypeVar("T")


# ----------------------------------------------------------------------------- where
def relative_to_workdir(path: Path) -> str:
    """``path`` relative to the working directory when it lies inside it, else absolute."""
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(resolved)


def sqlite_uri(db: Path) -> str:
    return f"sqlite:///{relative_to_workdir(db)}"


def resolve_uri(configured: str | None, store_dir: Path) -> str:
    """The store to use: ``configured``, else ``$MLFLOW_TRACKING_URI``, else ``<store_dir>/mlflow.db``."""
    return configured or os.environ.get(ENV_URI) or sqlite_uri(Path(store_dir) / STORE_FILE)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative paths stay relative), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):].split("?", 1)[0])


# ----------------------------------------------------------------------------- how
def retry(fn: Callable[[], T], tries: int = 8) -> T:
    """Call ``fn``, retrying with jittered back-off while SQLite says the database is locked."""
    for attempt in range(tries):
        try:
            return fn()
        except Exception as err:  # MLflow wraps sqlite errors in several exception types
            if "database is locked" not in str(err) or attempt == tries - 1:
                raise
            time.sleep(0.2 * 2**attempt * (0.5 + random.random()))
    raise AssertionError("unreachable")


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Hold ``<db>.lock`` (SQLite stores only) while creating or migrating the store."""
    db = sqlite_path(uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(db.with_name(db.name + ".lock")):
        yield


def _raw_client(uri: str) -> Any:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def client(uri: str) -> Any:
    """An MlflowClient; a new SQLite store gets its schema created under the store lock."""
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        with store_lock(uri):  # the first open migrates the schema: one process at a time
            retry(lambda: _raw_client(uri).search_experiments(max_results=1))
    return _raw_client(uri)


def _relocate(uri: str) -> None:
    """Rewrite the store's absolute artifact paths under the working directory as relative ones."""
    db = sqlite_path(uri)
    if db is None or not db.exists():
        return
    root = str(Path.cwd().resolve()).rstrip("/") + "/"
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as con, con:
        for table, column in (("experiments", "artifact_location"), ("runs", "artifact_uri")):
            for prefix in ("file://" + root, root):
                con.execute(f"UPDATE {table} SET {column} = substr({column}, ?) WHERE {column} LIKE ?",
                            (len(prefix) + 1, prefix + "%"))


def ensure_experiment(uri: str, name: str) -> str:
    """The experiment's id, creating the store and the experiment (artifacts next to the store)."""
    db = sqlite_path(uri)
    location = str(db.parent / ARTIFACT_DIR) if db is not None else None
    with store_lock(uri):
        mlflow = _raw_client(uri)

        def get_or_create() -> str:
            found = mlflow.get_experiment_by_name(name)
            if found is not None:
                if found.lifecycle_stage == "deleted":
                    mlflow.restore_experiment(found.experiment_id)
                return found.experiment_id
            return mlflow.create_experiment(name, artifact_location=location)

        experiment_id = retry(get_or_create)
        _relocate(uri)
    return experiment_id


# ----------------------------------------------------------------------------- runs
@dataclass(frozen=True)
class RunRef:
    """Where a cell's MLflow run lives (saved as the cell's ``run.json``)."""

    run_id: str
    tracking_uri: str
    experiment: str
    experiment_id: str

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> RunRef | None:
        try:
            return cls(**json.loads(Path(path).read_text()))
        except (OSError, ValueError, TypeError):
            return None


def cell_run(metrics: Any) -> RunRef | None:
    """The run a finished cell's ``metrics.json`` names (for the later stages), or None."""
    if not metrics.mlflow_run_id or not metrics.mlflow_tracking_uri:
        return None
    return RunRef(metrics.mlflow_run_id, metrics.mlflow_tracking_uri, metrics.mlflow_experiment or "", "")


def start_run(uri: str, experiment: str, run_name: str, tags: dict[str, str],
              params: dict[str, Any]) -> RunRef:
    """A new run with its tags and params (MLflow takes at most 100 params per call)."""
    from mlflow.entities import Param

    experiment_id = ensure_experiment(uri, experiment)
    mlflow = client(uri)
    run = retry(lambda: mlflow.create_run(experiment_id, run_name=run_name, tags=tags))
    batch = [Param(k, json.dumps(v) if isinstance(v, list | dict) else str(v)) for k, v in params.items()]
    for start in range(0, len(batch), 100):
        retry(lambda s=start: mlflow.log_batch(run.info.run_id, params=batch[s : s + 100]))
    return RunRef(run.info.run_id, uri, experiment, experiment_id)


def make_logger(ref: RunRef, resuming: bool = False) -> Any:
    """Lightning's MLFlowLogger on the cell's run (explicit URI, never ``file:./mlruns``).

    When ``resuming``, a metric is dropped at steps its run already holds: Lightning
    replays the steps between the last checkpoint and the interruption, and those were
    logged before the kill (same values; MLflow would keep both points).
    """
    from lightning.pytorch.loggers import MLFlowLogger

    logged: dict[str, int] = {}

    def high_water(key: str) -> int:
        if key not in logged:
            history = retry(lambda: client(ref.tracking_uri).get_metric_history(ref.run_id, key))
            logged[key] = max((m.step for m in history), default=-1)
        return logged[key]

    class ResumeAwareLogger(MLFlowLogger):
        def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
            if resuming and step is not None:
                metrics = {k: v for k, v in metrics.items() if step > high_water(k)}
            if metrics:
                super().log_metrics(metrics, step)

    return ResumeAwareLogger(experiment_name=ref.experiment, tracking_uri=ref.tracking_uri,
                             run_id=ref.run_id, log_model=False)


def log_metrics(ref: RunRef, metrics: dict[str, float], step: int, tags: dict[str, str] | None = None) -> int:
    """Log finite scalars (and tags) in batches; returns the number of metrics written."""
    import math

    from mlflow.entities import Metric, RunTag

    mlflow = client(ref.tracking_uri)
    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, step) for k, v in sorted(metrics.items())
             if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)]
    for start in range(0, len(items), 500):  # MLflow's per-call limit is 1000 metrics
        retry(lambda s=start: mlflow.log_batch(ref.run_id, metrics=items[s : s + 500]))
    if tags:
        retry(lambda: mlflow.log_batch(ref.run_id, tags=[RunTag(k, str(v)) for k, v in sorted(tags.items())]))
    return len(items)


def log_artifacts(ref: RunRef, paths: list[Path]) -> None:
    mlflow = client(ref.tracking_uri)
    for path in paths:
        retry(lambda p=path: mlflow.log_artifact(ref.run_id, str(p)))


def end_run(ref: RunRef, status: str) -> None:
    """``FINISHED`` or ``FAILED`` (a run must never be left ``RUNNING`` by an error)."""
    retry(lambda: client(ref.tracking_uri).set_terminated(ref.run_id, status))


def runs_by_name(uri: str, experiment: str) -> dict[str, list[str]] | None:
    """``run name -> run ids`` of an experiment, or None when the experiment does not exist."""
    mlflow = client(uri)
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs: dict[str, list[str]] = {}
    token = None
    while True:
        page = mlflow.search_runs([exp.experiment_id], max_results=1000, page_token=token,
                                  order_by=["attributes.start_time ASC"])
        for run in page:
            name = run.info.run_name or run.data.tags.get("mlflow.runName") or run.info.run_id
            runs.setdefault(name, []).append(run.info.run_id)
        token = page.token
        if not token:
            return runs
