"""The cell folder contract: its file names and the typed record in each file.

One module owns what a cell folder holds (``results/<profile>/cells/<cell_id>/``),
so training, evaluation, re-probing and the report agree on names and formats:

============= ======================================= ==========================
file          written by                              record
============= ======================================= ==========================
cell.yaml     the workflow (what the grid asked for)  ``CellConfig``
config.yaml   training (what was trained: resolved)   ``CellConfig``
metrics.json  training, last (its presence = done)    :class:`Metrics` (+ weights' size, sha256)
history.json  training (one entry per probe / val)    list of :class:`HistoryEntry`
gains.json    training / ``mhc-bench probe``          :class:`Gains`
eval.json     evaluation                              :class:`EvalRecord`
model.safetensors training (final weights; not        safetensors state dict
              committed: ``mhc-bench cell <id>
              --keep-weights`` regenerates them)
tokenizer.json training (copy of the data's)          tokenizers JSON
run.json      training (the MLflow run, not shared)   ``tracking.RunRef``
============= ======================================= ==========================

Every JSON file has one writer (``write_*``, atomic) and one reader (``read_*``):
a missing file reads as ``None``; a file that is unreadable or does not match its
record raises :class:`CellFileError` naming the file and what to do. Readers
accept only what the writers produce. Importing this module does not import torch.
The weights are trusted only when their size and sha256 match what ``metrics.json``
recorded (:func:`weights_problem`); cells from before that record (and ``model.pt`` of
older versions) load unchecked.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from mhc_bench.errors import UserError

CELL_YAML = "cell.yaml"
CONFIG = "config.yaml"
METRICS = "metrics.json"
HISTORY = "history.json"
GAINS = "gains.json"
EVAL = "eval.json"
MODEL = "model.safetensors"
LEGACY_MODEL = "model.pt"  # torch.save state dicts of earlier versions: still read
TOKENIZER = "tokenizer.json"
RUN = "run.json"
CHECKPOINT = Path("checkpoints") / "last.ckpt"
# completed; diverged (a training failure: non-finite or exploding loss or grad norm); stopped (by the
# optional gain ceiling, a probe that saves compute: not a training failure).
FINAL_STATUSES = ("completed", "diverged", "stopped")

_RECORD = ConfigDict(extra="forbid", protected_namespaces=())
Num = float | None  # JSON has no NaN/inf: non-finite numbers are written as null


class CellFileError(UserError):
    """A cell file that exists but cannot be used."""


class Metrics(BaseModel):
    """``metrics.json``: the finished cell's numbers (the source of truth; MLflow mirrors it)."""

    model_config = _RECORD

    cell_id: str
    status: Literal["completed", "diverged", "stopped"]
    stopped_step: int | None = None  # where a diverged or stopped cell ended
    stop_reason: str | None = None
    steps_done: int
    final_train_loss: Num
    final_val_loss: Num
    final_val_ppl: Num
    tokens_seen: int
    epochs_seen: Num = None  # passes over train.bin (how often the cell's data repeats)
    wall_time_s: float
    tokens_per_s: Num
    step_time_ms: Num
    first_step_s: Num = None  # the first step alone (holds torch.compile's compilation)
    peak_mem_mb: Num
    # The final model's probes (mhc_bench.probes); probe_version names their definitions.
    max_single_fwd: Num
    max_single_bwd: Num
    max_composite_fwd: Num
    max_composite_bwd: Num
    layer0_fwd: Num
    layer0_bwd: Num
    min_composite_min_col: Num
    max_prefix_fwd: Num = None
    max_stream_spread: Num = None
    final_stream_spread: Num = None
    max_col_err: Num = None  # the projection's column-sum error after its last iteration (max over layers)
    max_logit_span: Num = None  # the largest per-layer median logit span of H_res
    max_sinkhorn_iters_needed: int | None = None  # Sinkhorn iterations to converge (5001: beyond the search)
    probe_version: int | None = None
    # How the cell ran (outside its identity: every path computes the same numbers): which
    # implementations ran the maps and stream ops, and the execution settings.
    kernel_paths: str | None = None
    execution: dict[str, Any] | None = None
    # Maxima over the probes taken during training (null where those probes are stale).
    peak_max_composite_fwd: Num = None
    peak_max_composite_bwd: Num = None
    peak_max_prefix_fwd: Num = None
    peak_max_col_err: Num = None
    peak_max_logit_span: Num = None
    max_grad_norm: Num
    max_grad_norm_maps: Num
    spike_count: int
    spike_steps: list[int] = []
    n_params: int
    mlflow_run_id: str | None
    mlflow_tracking_uri: str | None
    mlflow_experiment: str | None
    config_hash: str
    variant: str
    n_streams: int
    seed: int
    # Optional (absent in cells of earlier versions): the weights file as written, checked
    # before the cell is trusted, and the run's provenance tags (git sha, hardware, versions).
    weights_bytes: int | None = None
    weights_sha256: str | None = None
    provenance: dict[str, str] | None = None


# Metrics copied from the final model's probes, and those kept as peaks over training.
GAIN_METRICS = ("max_single_fwd", "max_single_bwd", "max_composite_fwd", "max_composite_bwd", "layer0_fwd",
                "layer0_bwd", "min_composite_min_col", "max_prefix_fwd", "max_stream_spread",
                "final_stream_spread", "max_col_err", "max_logit_span", "max_sinkhorn_iters_needed",
                "probe_version")
PEAK_GAINS = ("max_composite_fwd", "max_composite_bwd", "max_prefix_fwd", "max_col_err", "max_logit_span")


class HistoryEntry(BaseModel):
    """One ``history.json`` entry: a probe step (losses, grads, speed, probes) or a validation."""

    model_config = _RECORD

    step: int
    val_loss: Num = None
    train_loss: Num = None
    lr: Num = None
    grad_norm: Num = None
    grad_norm_maps: Num = None
    grad_norm_rest: Num = None
    interval_max_grad_norm: Num = None
    tokens_per_s: Num = None
    step_time_ms: Num = None
    peak_mem_mb: Num = None
    spike_count: int | None = None
    probe_version: int | None = None
    max_single_fwd: Num = None
    max_single_bwd: Num = None
    max_composite_fwd: Num = None
    max_composite_bwd: Num = None
    min_single_min_col: Num = None
    min_composite_min_col: Num = None
    max_composite_max_abs_log_col: Num = None
    layer0_fwd: Num = None
    layer0_bwd: Num = None
    max_prefix_fwd: Num = None
    max_stream_spread: Num = None
    final_stream_spread: Num = None
    max_col_err: Num = None
    max_logit_span: Num = None
    single_fwd: list[Num] | None = None
    single_bwd: list[Num] | None = None
    composite_fwd: list[Num] | None = None
    composite_bwd: list[Num] | None = None
    composite_min_col: list[Num] | None = None
    prefix_fwd: list[Num] | None = None
    stream_spread: list[Num] | None = None
    col_err: list[Num] | None = None
    logit_span: list[Num] | None = None


class Gains(BaseModel):
    """``gains.json``: every probe of the final model (``mhc_bench.probes.probe_model``)."""

    model_config = _RECORD

    probe_version: int
    single_fwd: list[Num]
    single_bwd: list[Num]
    single_min_col: list[Num]
    single_max_abs_log_col: list[Num]
    composite_fwd: list[Num]
    composite_bwd: list[Num]
    composite_min_col: list[Num]
    composite_max_abs_log_col: list[Num]
    prefix_fwd: list[Num]
    stream_spread: list[Num]
    col_err: list[Num]
    logit_span: list[Num]
    sinkhorn_iters_needed: list[int | None]
    max_single_fwd: Num
    max_single_bwd: Num
    max_composite_fwd: Num
    max_composite_bwd: Num
    max_prefix_fwd: Num
    max_single_max_abs_log_col: Num
    max_composite_max_abs_log_col: Num
    min_single_min_col: Num
    min_composite_min_col: Num
    layer0_fwd: Num
    layer0_bwd: Num
    max_stream_spread: Num
    final_stream_spread: Num
    max_col_err: Num
    max_logit_span: Num
    max_sinkhorn_iters_needed: int | None


class Score(BaseModel):
    model_config = _RECORD

    value: Num
    stderr: Num


class EvalRow(BaseModel):
    """One evaluated task or group; ``chance`` exists only for multiple choice."""

    model_config = _RECORD

    kind: Literal["task", "group"]
    group: str | None
    n: int
    chance: Num
    metrics: dict[str, Score]


class EvalMirror(BaseModel):
    model_config = _RECORD

    run_id: str
    tracking_uri: str
    n_metrics: int


class EvalRecord(BaseModel):
    """``eval.json``: lm-eval scores of the cell, or why it was skipped (a diverged cell)."""

    model_config = _RECORD

    status: Literal["completed", "skipped"]
    reason: str | None = None
    complete: bool
    cell: str
    task_config_hash: str
    tasks: list[str]
    limit: int | None
    batch_size: int
    lm_eval_version: str
    seeds: dict[str, int]
    max_items: int | None = None
    device: str | None = None
    wall_time_s: float | None = None
    results: dict[str, EvalRow]
    mlflow: EvalMirror | None = None


R = TypeVar("R", bound=BaseModel)


def finite_or_none(value: Any) -> Any:
    """JSON has no NaN/inf: non-finite floats become null (recursively)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    return value


def write_json(path: Path, data: Any) -> Path:
    """Write atomically (temp file + rename): a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(finite_or_none(data), indent=2, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise CellFileError(f"{path} is unreadable ({type(err).__name__}: {err}); delete it and rerun "
                            "`make reproduce` (or `mhc-bench cell <id>`) to regenerate it") from None


def _parse(record: type[R], data: Any, path: Path) -> R:
    try:
        return record.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "<root>"
        raise CellFileError(f"{path} is not a valid {record.__name__} record ({where}: {first['msg']}); "
                            "delete it and rerun `make reproduce` to regenerate it") from None


def _read(record: type[R], path: Path) -> R | None:
    data = _load_json(path)
    return None if data is None else _parse(record, data, path)


def write_metrics(cell_dir: Path, metrics: Metrics) -> Path:
    return write_json(Path(cell_dir) / METRICS, metrics.model_dump())


def read_metrics(cell_dir: Path) -> Metrics | None:
    return _read(Metrics, Path(cell_dir) / METRICS)


def write_history(cell_dir: Path, entries: list[dict[str, Any]]) -> Path:
    return write_json(Path(cell_dir) / HISTORY,
                      [HistoryEntry.model_validate(finite_or_none(e)).model_dump(exclude_none=True)
                       for e in entries])


def read_history(cell_dir: Path) -> list[HistoryEntry]:
    path = Path(cell_dir) / HISTORY
    data = _load_json(path)
    if data is None:
        return []
    if not isinstance(data, list):
        raise CellFileError(f"{path} must hold a list of history entries; delete it and retrain the cell")
    return [_parse(HistoryEntry, entry, path) for entry in data]


def write_gains(cell_dir: Path, gains: dict[str, Any]) -> Path:
    return write_json(Path(cell_dir) / GAINS, Gains.model_validate(finite_or_none(gains)).model_dump())


def read_gains(cell_dir: Path) -> Gains | None:
    return _read(Gains, Path(cell_dir) / GAINS)


def write_eval(cell_dir: Path, record: EvalRecord) -> Path:
    return write_json(Path(cell_dir) / EVAL, record.model_dump())


def read_eval(cell_dir: Path) -> EvalRecord | None:
    return _read(EvalRecord, Path(cell_dir) / EVAL)


def finished(cell_dir: Path) -> Metrics | None:
    """The cell's metrics if it has finished (completed or diverged); None if not (yet)."""
    return read_metrics(cell_dir)


def require_finished(cell_dir: Path) -> Metrics:
    """The finished cell's metrics, or a :class:`CellFileError` saying what is missing."""
    cell_dir = Path(cell_dir)
    if not cell_dir.is_dir():
        raise CellFileError(f"no cell folder {cell_dir} (list a profile's cells with `mhc-bench cells`)")
    metrics = read_metrics(cell_dir)
    if metrics is None:
        state = "is training or was interrupted" if (cell_dir / CHECKPOINT).exists() else "was never trained"
        raise CellFileError(f"{cell_dir} has no {METRICS}: the cell {state}; train it first "
                            f"(`mhc-bench cell {cell_dir.name}`)")
    for name in (CONFIG, TOKENIZER):
        if not (cell_dir / name).exists():
            raise CellFileError(f"{cell_dir / name} is missing; retrain the cell "
                                f"(`mhc-bench cell {cell_dir.name} --keep-weights`)")
    if weights_file(cell_dir) is None:
        raise CellFileError(f"{cell_dir / MODEL} is missing (committed results carry no weights); "
                            f"regenerate it (`mhc-bench cell {cell_dir.name} --keep-weights`)")
    return metrics


def weights_file(cell_dir: Path) -> Path | None:
    """The cell's weights file (safetensors, else an older version's ``model.pt``), or None."""
    return next((p for p in (Path(cell_dir) / MODEL, Path(cell_dir) / LEGACY_MODEL) if p.exists()), None)


def file_sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_problem(cell_dir: Path, metrics: Metrics) -> str | None:
    """What is wrong with weights that exist but differ from the record (truncated, altered); None
    when they match, are absent, or the cell recorded nothing (an earlier version)."""
    path = Path(cell_dir) / MODEL
    if metrics.weights_bytes is None or not path.exists():
        return None
    size = path.stat().st_size
    if size != metrics.weights_bytes:
        return f"{path} has {size} bytes, {METRICS} recorded {metrics.weights_bytes} (truncated?)"
    if metrics.weights_sha256 and file_sha256(path) != metrics.weights_sha256:
        return f"{path} does not match the sha256 {METRICS} recorded (altered or damaged)"
    return None


def read_config(cell_dir: Path) -> Any:
    """The trained (resolved) config, else the one the workflow asked for, as ``CellConfig``."""
    from mhc_bench.cellconfig import ConfigError, load_cell_config

    for name in (CONFIG, CELL_YAML):
        path = Path(cell_dir) / name
        if path.exists():
            try:
                return load_cell_config(path)
            except ConfigError as err:
                raise CellFileError(f"{err.one_line()}; delete it and rerun to regenerate it") from None
    return None
