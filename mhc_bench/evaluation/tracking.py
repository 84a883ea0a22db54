"""Mirror eval.json's numbers into the cell's MLflow run (the training run, same id)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def retry_locked(fn: Callable[[], T], tries: int = 6, delay: float = 0.25) -> T:
    """Call ``fn``, retrying with backoff while SQLite reports 'database is locked'."""
    for attempt in range(tries):
        try:
            return fn()
        except Exception as err:
            if "database is locked" not in str(err) or attempt == tries - 1:
                raise
            time.sleep(delay * 2**attempt)
    raise AssertionError("unreachable")


def metric_items(rows: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Flat MLflow metric names: ``eval/<task>/<metric>`` (+ ``_stderr``), ``/chance``, ``/n``."""
    out: dict[str, float] = {}
    for task, row in rows.items():
        for metric, vals in row["metrics"].items():
            if vals["value"] is not None:
                out[f"eval/{task}/{metric}"] = vals["value"]
            if vals["stderr"] is not None:
                out[f"eval/{task}/{metric}_stderr"] = vals["stderr"]
        if row["chance"] is not None:
            out[f"eval/{task}/chance"] = row["chance"]
        out[f"eval/{task}/n"] = float(row["n"])
    return out


def log_to_run(tracking_uri: str, run_id: str, rows: dict[str, dict[str, Any]], tags: dict[str, str]) -> int:
    """Log every score of ``rows`` to ``run_id``; returns the number of metrics written."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, RunTag

    client = MlflowClient(tracking_uri=tracking_uri)
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, 0) for k, v in sorted(metric_items(rows).items())]
    run_tags = [RunTag(k, str(v)) for k, v in sorted(tags.items())]
    for start in range(0, len(metrics), 500):  # MLflow's per-call limit is 1000 metrics
        chunk = metrics[start : start + 500]
        retry_locked(lambda chunk=chunk: client.log_batch(run_id, metrics=chunk))
    retry_locked(lambda: client.log_batch(run_id, tags=run_tags))
    return len(metrics)
