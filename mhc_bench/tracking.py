"""MLflow for every stage: one URI rule, one store initialiser, one run per cell, one value per point.

- **Which store** (:func:`resolve_uri`, the only place that decides): the URI a
  profile or cell config names explicitly, else ``$MLFLOW_TRACKING_URI`` (point
  every stage of a default profile at a server), else
  ``sqlite:///<results>/<profile>/mlflow.db`` next to the cells (project-relative,
  so a results folder is self-contained).
- **Creating a SQLite store** is atomic and happens under a file lock (``<db>.lock``):
  the schema is built in a temporary file and renamed (:mod:`mhc_bench.mlstore`), so a
  kill never leaves a half-built store, and two processes never race on the migration.
  Every process checks a store before it uses it: a damaged one is one line naming
  ``mhc-bench store rebuild``, which rebuilds it from the cell files.
- **Artifacts are the cell folder.** A run in a SQLite store has its artifact URI set to
  its cell folder (relative to the working directory), which holds every file the run
  mirrors (config, metrics, history, gains, plots, weights when present): nothing is
  copied, and a clone's committed store opens the committed files. A server store gets
  copies, as MLflow does.
- **One run per cell:** created before training, its id kept in the cell's
  ``run.json``; a resumed or restarted cell logs into the same run; a cell trained
  afresh (its folder deleted, ``--force``) replaces the runs of that name.
- **One value per (run, key, step):** :func:`log_points` skips a point already logged
  with the same value and replaces one logged with another value (SQLite stores; a
  server store keeps the first value and says so). So a replayed step, a re-finalised
  cell, a re-probe or a re-evaluation never adds a second point.
- Every write retries while SQLite says "database is locked".
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock

ENV_URI = "MLFLOW_TRACKING_URI"
STORE_FILE = "mlflow.db"
CELLS_DIR = "cells"  # experiments' artifact location: runs point into their cell folders
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


_checked: set[Path] = set()


def prepare_store(uri: str) -> None:
    """Check a SQLite store once per process and create it atomically when absent."""
    db = sqlite_path(uri)
    if db is None:
        return
    from mhc_bench import mlstore

    key = db.resolve()
    if key in _checked and db.exists():
        return
    with store_lock(uri):
        mlstore.check_store(db)  # raises StoreError (one line) on a damaged store with runs in it
        if not db.exists():
            mlstore.create_store_file(db)
    _checked.add(key)


def client(uri: str) -> Any:
    """An MlflowClient on a checked store (a new SQLite store is created atomically first)."""
    prepare_store(uri)
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
    """The experiment's id, creating the store and the experiment (artifacts: the cell folders)."""
    db = sqlite_path(uri)
    location = str(db.parent / CELLS_DIR) if db is not None else None
    prepare_store(uri)
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
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)

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


def run_status(ref: RunRef) -> str | None:
    """The run's status (``RUNNING``, ``FINISHED``...), or None when the store does not hold it
    as an active run (a rebuilt or replaced store, a deleted run)."""
    try:
        run = retry(lambda: client(ref.tracking_uri).get_run(ref.run_id))
    except Exception as err:
        if "RESOURCE_DOES_NOT_EXIST" in str(err) or "not found" in str(err):
            return None
        raise
    return None if run.info.lifecycle_stage != "active" else run.info.status


DERIVED_TAGS = ("status", "probe_version")  # set from metrics.json / eval.json (mhc_bench.train.mirror)


def run_tags(ref: RunRef) -> dict[str, str]:
    """The run's own tags (what it was created with: git sha, hardware, versions, grid values),
    without MLflow's ``mlflow.*`` and the tags mirrored from the cell's files."""
    tags = retry(lambda: client(ref.tracking_uri).get_run(ref.run_id)).data.tags
    return {k: v for k, v in sorted(tags.items())
            if not k.startswith(("mlflow.", "eval_")) and k not in DERIVED_TAGS}


def replace_runs_named(uri: str, experiment: str, name: str, cell_dir: Path) -> list[str]:
    """Delete the runs called ``name`` that belong to ``cell_dir`` or to no existing cell folder (for
    good in a SQLite store); returns their ids. A run whose artifact root is another existing
    folder (the same cell trained elsewhere into this store) is left alone."""
    ids = (runs_by_name(uri, experiment) or {}).get(name, [])
    if not ids:
        return []
    mlflow = client(uri)
    sqlite = sqlite_path(uri) is not None
    here = Path(cell_dir).resolve()
    store = getattr(getattr(mlflow, "_tracking_client", None), "store", None)
    deleted = []
    for run_id in ids:
        root = Path(retry(lambda r=run_id: mlflow.get_run(r)).info.artifact_uri.removeprefix("file://"))
        if sqlite and root.is_dir() and root.resolve() != here:
            continue
        if sqlite and hasattr(store, "_hard_delete_run"):
            retry(lambda r=run_id: store._hard_delete_run(r))
        else:
            retry(lambda r=run_id: mlflow.delete_run(r))
        deleted.append(run_id)
    return deleted


def start_run(uri: str, experiment: str, run_name: str, tags: dict[str, str],
              params: dict[str, Any], artifact_dir: Path | None = None, run_id: str | None = None) -> RunRef:
    """A new run with its tags and params (MLflow takes at most 100 params per call).

    ``artifact_dir``: the run's artifact root in a SQLite store (the cell folder, relative to the
    working directory); ``run_id``: keep this id (a store rebuilt from cell files).
    """
    from mlflow.entities import Param

    from mhc_bench import mlstore

    experiment_id = ensure_experiment(uri, experiment)
    mlflow = client(uri)
    run = retry(lambda: mlflow.create_run(experiment_id, run_name=run_name, tags=tags))
    new_id = run.info.run_id
    db = sqlite_path(uri)
    if db is not None:
        if run_id is not None:
            mlstore.set_run_id(db, new_id, run_id)
            new_id = run_id
        if artifact_dir is not None:
            mlstore.set_artifact_uri(db, new_id, relative_to_workdir(artifact_dir))
    batch = [Param(k, json.dumps(v) if isinstance(v, list | dict) else str(v)) for k, v in params.items()]
    for start in range(0, len(batch), 100):
        retry(lambda s=start: mlflow.log_batch(new_id, params=batch[s : s + 100]))
    return RunRef(new_id, uri, experiment, experiment_id)


def reopen_run(ref: RunRef) -> None:
    """Mark a reused run ``RUNNING`` again (it may have been ended by an earlier, failed attempt)."""
    if run_status(ref) != "RUNNING":
        retry(lambda: client(ref.tracking_uri).update_run(ref.run_id, status="RUNNING"))


def make_logger(ref: RunRef) -> Any:
    """Lightning's MLFlowLogger on the cell's run (explicit URI, never ``file:./mlruns``).

    A point is dropped at a step its key already holds: Lightning replays the steps between
    the last checkpoint (or the start, before the first one) and the interruption, and those
    were logged before the kill. The logger never ends the run: Lightning would mark it
    ``FINISHED`` when ``fit`` returns, before the cell's files exist (the runner ends it).
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
            if step is not None:
                metrics = {k: v for k, v in metrics.items() if step > high_water(k)}
                for key in metrics:
                    logged[key] = step
            if metrics:
                super().log_metrics(metrics, step)

        def finalize(self, status: str = "success") -> None:
            """The runner ends the run (FINISHED only once metrics.json exists)."""

    return ResumeAwareLogger(experiment_name=ref.experiment, tracking_uri=ref.tracking_uri,
                             run_id=ref.run_id, log_model=False)


def _finite(value: Any) -> bool:
    import math

    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _existing_points(ref: RunRef, keys: set[str]) -> dict[tuple[str, int], list[float]]:
    db = sqlite_path(ref.tracking_uri)
    if db is not None:
        from mhc_bench import mlstore

        return retry(lambda: mlstore.logged_points(db, ref.run_id))
    mlflow = client(ref.tracking_uri)
    points: dict[tuple[str, int], list[float]] = {}
    for key in sorted(keys):
        for m in retry(lambda k=key: mlflow.get_metric_history(ref.run_id, k)):
            points.setdefault((key, int(m.step)), []).append(float(m.value))
    return points


def log_points(ref: RunRef, points: dict[tuple[str, int], float], tags: dict[str, str] | None = None) -> int:
    """Log finite ``(key, step) -> value`` points so that each (key, step) holds exactly this value.

    A point already logged with the same value is skipped; one logged with another value is
    replaced (SQLite stores; a server store keeps its value and a warning says so). Returns the
    number of points written.
    """
    from mlflow.entities import Metric, RunTag

    wanted = {k: float(v) for k, v in points.items() if _finite(v)}
    mlflow = client(ref.tracking_uri)
    existing = _existing_points(ref, {key for key, _ in wanted}) if wanted else {}
    replace = [p for p, v in wanted.items() if p in existing and existing[p] != [v]]
    db = sqlite_path(ref.tracking_uri)
    if replace and db is not None:
        from mhc_bench import mlstore

        retry(lambda: mlstore.delete_points(db, ref.run_id, replace))
    elif replace:
        print(f"warning: {len(replace)} MLflow point(s) of run {ref.run_id} already hold other values; "
              "a server store keeps the first ones", file=sys.stderr)
    todo = [p for p in wanted if p not in existing or (db is not None and p in replace)]
    now = int(time.time() * 1000)
    items = [Metric(key, wanted[(key, step)], now, step) for key, step in sorted(todo)]
    for start in range(0, len(items), 500):  # MLflow's per-call limit is 1000 metrics
        retry(lambda s=start: mlflow.log_batch(ref.run_id, metrics=items[s : s + 500]))
    if tags:
        retry(lambda: mlflow.log_batch(ref.run_id, tags=[RunTag(k, str(v)) for k, v in sorted(tags.items())]))
    return len(items)


def log_metrics(ref: RunRef, metrics: dict[str, float], step: int, tags: dict[str, str] | None = None) -> int:
    """Log finite scalars (and tags) at one step, one value per (key, step); returns how many
    finite metrics the step holds now (written or already there)."""
    log_points(ref, {(k, step): v for k, v in metrics.items()}, tags)
    return sum(1 for v in metrics.values() if _finite(v))


def log_artifacts(ref: RunRef, paths: list[Path]) -> None:
    """Copy files into the run's artifacts, except in a SQLite store, whose runs' artifact root is
    the cell folder holding them already."""
    if sqlite_path(ref.tracking_uri) is not None:
        return
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
