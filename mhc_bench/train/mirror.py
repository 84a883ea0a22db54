"""What a cell's MLflow run holds, as a function of the cell's files (MLflow mirrors them).

The cell folder is the source of truth; its run mirrors it point for point:

- every ``history.json`` entry at its step: the probe's scalars (``train/``, ``grad/``,
  ``gain/``, ``streams/``, ``perf/``) and a validation's ``val/loss`` and ``val/ppl``;
- ``metrics.json`` as ``final/<key>`` at ``steps_done``, with tags ``status`` and
  ``probe_version``, and the run's provenance tags (git sha, hardware, versions);
- ``eval.json`` as ``eval/<task>/<metric>`` at step 0, with ``eval_*`` tags.

Training logs the same names live (the monitor, through :func:`entry_metrics` and
:func:`val_metrics`) and finalisation logs the whole mirror once more
(:func:`mirror_cell`), so a kill anywhere leaves at most points that the final sync
corrects, and ``mhc-bench store rebuild`` rebuilds a lost store from the files alone.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mhc_bench import cellfolder as cf
from mhc_bench import tracking

Points = dict[tuple[str, int], float]


def metric_name(key: str) -> str:
    """The MLflow name of a history entry's scalar."""
    if key.startswith(("max_single", "max_composite", "max_prefix", "min_", "layer0")):
        return f"gain/{key}"
    if key.endswith("stream_spread"):
        return f"streams/{key}"
    if key in ("max_col_err", "max_logit_span"):
        return f"projection/{key}"
    if key.startswith(("grad_norm", "interval_max_grad")):
        return f"grad/{key}"
    if key in ("tokens_per_s", "step_time_ms", "peak_mem_mb"):
        return f"perf/{key}"
    return {"train_loss": "train/loss_mean"}.get(key, f"train/{key}")


def val_metrics(loss: float | None) -> dict[str, float]:
    """``val/loss`` and ``val/ppl`` of one validation (non-finite values are not logged)."""
    if loss is None or not math.isfinite(loss):
        return {}
    return {"val/loss": float(loss), "val/ppl": math.exp(min(loss, 700.0))}


def entry_metrics(entry: dict[str, Any]) -> dict[str, float]:
    """The scalars of one history entry under their MLflow names (lists, step, version left out)."""
    out: dict[str, float] = {}
    for key, value in entry.items():
        if key in ("step", "probe_version", "val_loss") or value is None or isinstance(value, list):
            continue
        if not math.isfinite(value):  # history.json writes it as null: the mirror has no point either
            continue
        out[metric_name(key)] = float(value)
    return {**out, **val_metrics(entry.get("val_loss"))}


def history_points(entries: list[dict[str, Any]]) -> Points:
    return {(name, int(e["step"])): value for e in entries for name, value in entry_metrics(e).items()}


def final_points(metrics: cf.Metrics) -> Points:
    record = metrics.model_dump()
    return {(f"final/{k}", metrics.steps_done): v for k, v in record.items()
            if isinstance(v, int | float) and not isinstance(v, bool)}


def final_tags(metrics: cf.Metrics) -> dict[str, str]:
    return {**(metrics.provenance or {}), "status": metrics.status,
            "probe_version": str(metrics.probe_version)}


def eval_metrics(rows: dict[str, cf.EvalRow]) -> dict[str, float]:
    """Flat MLflow metric names: ``eval/<task>/<metric>`` (+ ``_stderr``), ``/chance``, ``/n``."""
    out: dict[str, float] = {}
    for task, row in rows.items():
        for metric, score in row.metrics.items():
            if score.value is not None:
                out[f"eval/{task}/{metric}"] = score.value
            if score.stderr is not None:
                out[f"eval/{task}/{metric}_stderr"] = score.stderr
        if row.chance is not None:
            out[f"eval/{task}/chance"] = row.chance
        out[f"eval/{task}/n"] = float(row.n)
    return out


def eval_tags(record: cf.EvalRecord) -> dict[str, str]:
    return {"eval_task_config_hash": record.task_config_hash, "eval_batch_size": str(record.batch_size),
            "eval_limit": str(record.limit), "eval_lm_eval_version": record.lm_eval_version,
            "eval_status": record.status}


def cell_points(cell_dir: Path) -> tuple[Points, dict[str, str]]:
    """Every point and tag the run of a finished cell holds, from its files."""
    metrics = cf.read_metrics(cell_dir)
    if metrics is None:
        raise cf.CellFileError(f"{Path(cell_dir) / cf.METRICS} is missing: the cell has not finished")
    history = [h.model_dump(exclude_none=True) for h in cf.read_history(cell_dir)]
    points, tags = {**history_points(history), **final_points(metrics)}, final_tags(metrics)
    record = cf.read_eval(cell_dir)
    if record is not None:
        points.update({(k, 0): v for k, v in eval_metrics(record.results).items()})
        tags.update(eval_tags(record))
    return points, tags


def mirror_cell(ref: tracking.RunRef, cell_dir: Path) -> int:
    """Bring the run in line with the cell's files (one value per point); points written."""
    points, tags = cell_points(cell_dir)
    return tracking.log_points(ref, points, tags)
