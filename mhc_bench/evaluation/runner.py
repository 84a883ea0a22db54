"""Evaluate one trained cell: lm-eval on the local suite (and built-in tasks when online).

``eval.json`` in the cell directory is the result of record; it is skipped,
not recomputed, when a complete one exists for the same task config hash,
task list, limit and batch size. Seeds and batch size are fixed and written
down because lm-eval scores move with both.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from mhc_bench.evaluation.adapter import DEFAULT_BATCH_SIZE
from mhc_bench.evaluation.prepare import DEFAULT_MAX_ITEMS, GROUPS, PreparedTasks, prepare_tasks
from mhc_bench.paths import configure_environment

EVAL_FILE = "eval.json"
SEEDS = {"random_seed": 0, "numpy_random_seed": 1234, "torch_random_seed": 1234, "fewshot_random_seed": 1234}
BOOTSTRAP_ITERS = 1000  # only non-mean metrics bootstrap; the ones used here have closed-form stderr


class TaskUnavailableError(RuntimeError):
    """A requested task needs data this machine cannot reach."""


def hub_offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
               for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))


def split_tasks(tasks: list[str], prepared: PreparedTasks) -> tuple[list[str], list[str]]:
    """(local, built-in): built-in names (``bbh``, ``gsm8k``, ``mmlu``...) need lm-eval's hub datasets."""
    local = [t for t in tasks if t in prepared.leaves or t in prepared.groups]
    return local, [t for t in tasks if t not in local]


def check_builtin_reachable(builtin: list[str]) -> None:
    """Fail fast, naming the tasks, instead of letting ``datasets`` hang or retry offline."""
    if builtin and hub_offline():
        raise TaskUnavailableError(
            f"task(s) {builtin} are lm-eval built-ins whose datasets come from the Hugging Face hub, "
            "but HF_DATASETS_OFFLINE/HF_HUB_OFFLINE is set; run them on a machine with hub access "
            f"(unset both variables) or use the local suite {list(GROUPS)}"
        )


def _identity(
    prepared: PreparedTasks, tasks: list[str], limit: int | None, batch_size: int
) -> dict[str, Any]:
    import lm_eval

    return {"task_config_hash": prepared.config_hash, "tasks": list(tasks), "limit": limit,
            "batch_size": batch_size, "lm_eval_version": getattr(lm_eval, "__version__", "unknown"),
            "seeds": SEEDS}


def _existing(path: Path, identity: dict[str, Any]) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    same = all(data.get(k) == v for k, v in identity.items())
    return data if same and data.get("complete") is True else None


def _log_mlflow(cell_dir: Path, record: dict[str, Any]) -> dict[str, Any] | None:
    """Mirror the scores into the training run named in metrics.json; None when there is none."""
    from mhc_bench.evaluation.tracking import log_to_run

    try:
        metrics = json.loads((cell_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    run_id, uri = metrics.get("mlflow_run_id"), metrics.get("mlflow_tracking_uri")
    if not run_id or not uri:
        return None
    tags = {"eval_task_config_hash": record["task_config_hash"], "eval_batch_size": record["batch_size"],
            "eval_limit": record["limit"], "eval_lm_eval_version": record["lm_eval_version"]}
    n = log_to_run(uri, run_id, record["results"], tags)
    return {"run_id": run_id, "tracking_uri": uri, "n_metrics": n}


def evaluate_cell(
    cell_dir: str | Path,
    tasks: list[str] | tuple[str, ...] = GROUPS,
    limit: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_items: int = DEFAULT_MAX_ITEMS,
    force: bool = False,
    log_mlflow: bool = True,
) -> dict[str, Any]:
    """Run ``tasks`` on the cell, write ``eval.json`` and log to MLflow; return the record."""
    configure_environment()
    cell_dir = Path(cell_dir)
    tasks = list(tasks)
    prepared = prepare_tasks(max_items)
    local, builtin = split_tasks(tasks, prepared)
    check_builtin_reachable(builtin)
    identity = _identity(prepared, tasks, limit, batch_size)
    out_path = cell_dir / EVAL_FILE
    if not force and (done := _existing(out_path, identity)) is not None:
        return done

    import lm_eval
    import lm_eval.tasks
    from lm_eval.tasks import TaskManager

    from mhc_bench.evaluation.adapter import MhcLM
    from mhc_bench.evaluation.results import summarize

    start = time.time()
    lm = MhcLM.from_cell(cell_dir, batch_size=batch_size)
    if not all(bool(p.isfinite().all()) for p in lm.model.parameters()):
        # A diverged cell keeps its place in the tables: record why it has no scores.
        record = {**identity, "complete": True, "cell": cell_dir.name, "status": "skipped",
                  "reason": "non-finite weights (the cell diverged)", "results": {}, "mlflow": None}
        _write_record(out_path, record)
        return record
    manager = TaskManager(include_path=str(prepared.root / "yaml"), include_defaults=bool(builtin))
    results = lm_eval.simple_evaluate(
        model=lm, tasks=local + builtin, task_manager=manager, limit=limit, log_samples=False,
        bootstrap_iters=BOOTSTRAP_ITERS, **SEEDS,
    )
    record = {**identity, "complete": True, "cell": cell_dir.name, "status": "completed",
              "device": str(lm.device),
              "max_items": max_items, "wall_time_s": round(time.time() - start, 2),
              "results": summarize(results, prepared), "mlflow": None}
    if log_mlflow:
        record["mlflow"] = _log_mlflow(cell_dir, record)
    _write_record(out_path, record)
    return record


def _write_record(out_path: Path, record: dict[str, Any]) -> None:
    """Atomic write: an interrupted evaluation never leaves a half-written eval.json."""
    tmp = out_path.with_name(f".{EVAL_FILE}.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=False) + "\n")
    tmp.replace(out_path)
