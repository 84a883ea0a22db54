"""Evaluate one trained cell: lm-eval on the local suite (and built-in tasks when online).

``eval.json`` in the cell directory is the result of record; it is skipped,
not recomputed, when a complete one exists for the same task config hash,
task list, limit and batch size. Seeds and batch size are fixed and written
down because lm-eval scores move with both.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mhc_bench import cellfolder as cf
from mhc_bench import tracking
from mhc_bench.evaluation.prepare import DEFAULT_MAX_ITEMS, GROUPS, PreparedTasks, prepare_tasks
from mhc_bench.evaluation.sources import (  # noqa: F401  (TaskUnavailableError: the error callers catch)
    TaskUnavailableError,
    check_builtin_reachable,
    check_source_named,
    unknown_local,
)
from mhc_bench.paths import configure_environment

DEFAULT_BATCH_SIZE = 16
SEEDS = {"random_seed": 0, "numpy_random_seed": 1234, "torch_random_seed": 1234, "fewshot_random_seed": 1234}
BOOTSTRAP_ITERS = 1000  # only non-mean metrics bootstrap; the ones used here have closed-form stderr


def split_tasks(tasks: list[str], prepared: PreparedTasks) -> tuple[list[str], list[str]]:
    """(local, built-in): built-in names (``bbh``, ``gsm8k``, ``mmlu``...) need lm-eval's hub datasets."""
    local = [t for t in tasks if t in prepared.leaves or t in prepared.groups]
    return local, [t for t in tasks if t not in local]


def _identity(
    prepared: PreparedTasks, tasks: list[str], limit: int | None, batch_size: int
) -> dict[str, Any]:
    import lm_eval

    return {"task_config_hash": prepared.config_hash, "tasks": list(tasks), "limit": limit,
            "batch_size": batch_size, "lm_eval_version": getattr(lm_eval, "__version__", "unknown"),
            "seeds": SEEDS}


def _existing(cell_dir: Path, identity: dict[str, Any]) -> cf.EvalRecord | None:
    """A complete eval.json made with the same tasks, limit, batch size and task data."""
    done = cf.read_eval(cell_dir)
    if done is None or not done.complete:
        return None
    return done if all(getattr(done, k) == v for k, v in identity.items()) else None


def mlflow_metrics(rows: dict[str, cf.EvalRow]) -> dict[str, float]:
    """Flat MLflow metric names: ``eval/<task>/<metric>`` (+ ``_stderr``), ``/chance``, ``/n``."""
    from mhc_bench.train.mirror import eval_metrics

    return eval_metrics(rows)


def _mirror(metrics: cf.Metrics, record: cf.EvalRecord) -> cf.EvalMirror | None:
    """Log the scores into the cell's training run (the one metrics.json names), one value per
    point: a re-evaluation (or one killed after logging) replaces, never adds."""
    from mhc_bench.train.mirror import eval_tags

    ref = tracking.cell_run(metrics)
    if ref is None:
        return None
    n = tracking.log_metrics(ref, mlflow_metrics(record.results), 0, tags=eval_tags(record))
    return cf.EvalMirror(run_id=ref.run_id, tracking_uri=ref.tracking_uri, n_metrics=n)


def evaluate_cell(
    cell_dir: str | Path,
    tasks: list[str] | tuple[str, ...] = GROUPS,
    limit: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_items: int = DEFAULT_MAX_ITEMS,
    force: bool = False,
    log_mlflow: bool = True,
    source: str | None = None,
) -> cf.EvalRecord:
    """Run ``tasks`` on a finished cell, write ``eval.json`` and log to MLflow; return the record.

    ``source`` (``bigbench:<path>``) adds BIG-bench's task files to the suite. A named task
    whose data this machine lacks fails before the model is loaded.
    A diverged cell is not evaluated (its weights may be finite while its training blew
    up): its eval.json says so, and the report shows no scores for it.
    """
    configure_environment()
    cell_dir = Path(cell_dir)
    metrics = cf.require_finished(cell_dir)
    tasks = list(tasks)
    check_source_named(tasks, source)
    prepared = prepare_tasks(max_items, source=source)
    local, builtin = split_tasks(tasks, prepared)
    unknown_local(builtin, set(prepared.leaves) | set(prepared.groups))
    check_builtin_reachable(builtin)
    identity = _identity(prepared, tasks, limit, batch_size)
    if not force and (done := _existing(cell_dir, identity)) is not None:
        return done
    if metrics.status != "completed":
        reason = f"the cell {metrics.status} at step {metrics.stopped_step} ({metrics.stop_reason})"
        record = cf.EvalRecord(**identity, complete=True, cell=cell_dir.name, status="skipped", reason=reason,
                               results={})
        record.mlflow = _mirror(metrics, record) if log_mlflow else None
        cf.write_eval(cell_dir, record)
        return record

    import lm_eval
    import lm_eval.tasks
    from lm_eval.tasks import TaskManager

    from mhc_bench.evaluation.adapter import MhcLM
    from mhc_bench.evaluation.results import summarize

    start = time.time()
    lm = MhcLM.from_cell(cell_dir, batch_size=batch_size)
    manager = TaskManager(include_path=str(prepared.root / "yaml"), include_defaults=bool(builtin))
    results = lm_eval.simple_evaluate(
        model=lm, tasks=local + builtin, task_manager=manager, limit=limit, log_samples=False,
        bootstrap_iters=BOOTSTRAP_ITERS, **SEEDS,
    )
    record = cf.EvalRecord(**identity, complete=True, cell=cell_dir.name, status="completed",
                           device=str(lm.device), max_items=max_items,
                           wall_time_s=round(time.time() - start, 2),
                           results=summarize(results, prepared))
    if log_mlflow:
        record.mlflow = _mirror(metrics, record)
    cf.write_eval(cell_dir, record)
    return record
