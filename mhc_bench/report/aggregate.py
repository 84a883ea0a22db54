"""One tidy row per cell: grid columns, every metric and every eval score (``summary.csv``).

Grid values come from the cell's config (``config.yaml`` as trained, else ``cell.yaml``
as asked), falling back to ``metrics.json`` when there is neither. ``scale`` is
``d<d_model>-b<n_layer>`` (width and transformer blocks; the paper's L counts residual layers,
``residual_layers`` = 2 x blocks) and ``maps`` a label made from the ``model.maps`` list content
(``none``, ``res``, ``res+pre``, ``res+pre+post``; ``-`` for the baseline, which has no
maps), so the report never depends on the profile's names for map sets. Metric columns
are the fields of :class:`mhc_bench.cellfolder.Metrics`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from mhc_bench.cellfolder import Metrics
from mhc_bench.definitions import PROBE_VERSION
from mhc_bench.report.cells import Cell, Problem

GRID_COLUMNS = [
    "cell_id",
    "name",
    "variant",
    "n",
    "scale",
    "d_model",
    "n_layer",
    "seed",
    "maps",
    "lr",
    "grad_clip",
    "mix_weight",
    "residual_layers",
    "experiments",
    "steps",
    "batch_size",
    "seq_len",
]


class GroupKey(NamedTuple):
    """Cells sharing these form one group; seeds vary inside a group.

    ``grad_clip`` and ``mix_weight`` (task-format text mixed into training) are part of the key
    so that a frontier cell without clipping, or a downstream cell on mixed data, never averages
    with a main cell at the same width, depth and learning rate.
    """

    variant: str
    n: float
    scale: str
    maps: str
    lr: float
    grad_clip: float
    mix_weight: float


GROUP_KEY = list(GroupKey._fields)
# Metrics fields that duplicate grid columns (checked against the config, not repeated).
_GRID_IN_METRICS = {"cell_id": "cell_id", "variant": "variant", "n_streams": "n", "seed": "seed"}
METRIC_KEYS = [k for k, f in Metrics.model_fields.items()
               if k not in _GRID_IN_METRICS and f.annotation is not list[int]]
# Probe results: blanked (and the cell listed) when measured under another probe definition.
PROBE_COLUMNS = ("max_single_fwd", "max_single_bwd", "max_composite_fwd", "max_composite_bwd", "layer0_fwd",
                 "layer0_bwd", "min_composite_min_col", "max_prefix_fwd", "max_stream_spread",
                 "final_stream_spread", "peak_max_composite_fwd", "peak_max_composite_bwd",
                 "peak_max_prefix_fwd")
MAP_ORDER = ("res", "pre", "post")
BASELINE_MAPS = "-"
VARIANT_ORDER = {"baseline": 0, "hc": 1, "mhc": 2}


def maps_label(maps: Any) -> str:
    """``[]`` -> ``none``, ``["post", "res"]`` -> ``res+post`` (content, not the profile's name)."""
    if maps is None or maps == "?":
        return "?"
    if isinstance(maps, str):
        maps = [m for m in maps.replace("+", ",").split(",") if m.strip()]
    items = [str(m).strip() for m in maps]
    known = [m for m in MAP_ORDER if m in items]
    extra = sorted({m for m in items if m not in MAP_ORDER})
    return "+".join(known + extra) or "none"


def _num(value: Any) -> Any:
    """JSON nulls become NaN so numeric columns stay numeric."""
    return math.nan if value is None else value


def _grid(cell: Cell) -> tuple[dict[str, Any], list[Problem]]:
    metrics = cell.metrics or {}
    cfg = cell.config
    if cfg is None:
        row: dict[str, Any] = {c: math.nan for c in GRID_COLUMNS}
        row.update(cell_id=cell.cell_id, name=None, variant=metrics.get("variant"), scale="?", maps="?",
                   n=_num(metrics.get("n_streams")), seed=_num(metrics.get("seed")))
        return row, []
    model, train = cfg.model, cfg.train
    row = {
        "cell_id": cell.cell_id,
        "name": cfg.name,
        "variant": model.variant,
        "n": model.n_streams,
        "scale": f"d{model.d_model}-b{model.n_layer}",  # width and blocks (2 residual layers each)
        "d_model": model.d_model,
        "n_layer": model.n_layer,
        "seed": train.seed,
        # The baseline has no maps: its list (the profile's "all") would mislead.
        # Not "n/a": pandas reads that back as NaN.
        "maps": BASELINE_MAPS if model.variant == "baseline" else maps_label(model.maps),
        "lr": train.lr,
        "grad_clip": train.grad_clip,
        "mix_weight": cfg.data.mix_weight,  # share of task-format text mixed into training
        "residual_layers": 2 * model.n_layer,  # the paper's L: attention and MLP are layers each
        # "+"-joined names of the profile's experiments this cell serves (main, depth, frontier...)
        "experiments": "+".join(cfg.experiments),
        "steps": train.steps,
        "batch_size": train.batch_size,
        "seq_len": model.seq_len,
    }
    problems = []
    for key, column in _GRID_IN_METRICS.items():
        if key == "cell_id" or metrics.get(key) is None:
            continue
        if str(metrics[key]) != str(row[column]):
            problems.append(Problem(cell.cell_id, "config/metrics mismatch",
                                    f"{key}: config {row[column]!r}, metrics.json {metrics[key]!r}"))
    return row, problems


def eval_scores(ev: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``task:metric -> {metric, value, stderr, n, chance}`` from an eval.json record.

    Only the suites (groups: BBH gen/MC, GSM, MMLU letter/cloze) are kept when present;
    per-task leaves stay in eval.json and MLflow.
    """
    results = ev["results"]
    if any(row["kind"] == "group" for row in results.values()):
        results = {task: row for task, row in results.items() if row["kind"] == "group"}
    scores: dict[str, dict[str, Any]] = {}
    for task, row in results.items():
        for metric, vals in row["metrics"].items():
            scores[f"{task}:{metric}"] = {"metric": metric, "value": vals["value"], "stderr": vals["stderr"],
                                          "n": row["n"], "chance": row["chance"]}
    return scores


def _eval_columns(cell: Cell) -> dict[str, Any]:
    ev = cell.eval
    if ev is None:
        return {"eval_status": None}
    out: dict[str, Any] = {"eval_status": ev["status"]}
    for task, res in sorted(eval_scores(ev).items()):
        out[f"eval.{task}"] = _num(res["value"])
        out[f"eval.{task}.stderr"] = _num(res["stderr"])
        out[f"eval.{task}.chance"] = _num(res["chance"])
        out[f"eval.{task}.n"] = _num(res["n"])
        out[f"eval.{task}.metric"] = res["metric"]
    return out


def cell_row(cell: Cell) -> tuple[dict[str, Any], list[Problem]]:
    """The summary row of one cell plus any config/metrics disagreement found on the way."""
    row, problems = _grid(cell)
    metrics = cell.metrics or {}
    for key in METRIC_KEYS:
        row[key] = _num(metrics.get(key))
    for key in sorted(metrics):
        if key not in row and key not in _GRID_IN_METRICS and not isinstance(metrics[key], (dict, list)):
            row[key] = _num(metrics[key])
    version = metrics.get("probe_version")
    if cell.metrics is not None and version != PROBE_VERSION:
        for key in PROBE_COLUMNS:
            row[key] = math.nan
        where = f"<results>/cells/{cell.folder.name}"
        problems.append(Problem(cell.cell_id, "stale probes",
                                f"gains measured under probe definition {version or 1}, current is "
                                f"{PROBE_VERSION}: left out of every table; re-probe with "
                                f"`mhc-bench probe --cell {where}` (regenerate absent weights first: "
                                f"`mhc-bench cell {cell.folder.name} --keep-weights`)"))
    row["has_metrics"] = cell.metrics is not None
    row["has_eval"] = cell.eval is not None
    row.update(_eval_columns(cell))
    return row, problems


def eval_tasks(frame: pd.DataFrame) -> list[str]:
    """Task names present in the frame's ``eval.<task>`` columns."""
    return sorted(c[5:] for c in frame.columns if c.startswith("eval.") and c.count(".") == 1)


def build_frame(cells: list[Cell]) -> tuple[pd.DataFrame, list[Problem]]:
    """The tidy DataFrame (one row per cell, sorted by cell id) and mismatches found."""
    rows, problems = [], []
    for cell in cells:
        row, found = cell_row(cell)
        rows.append(row)
        problems.extend(found)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=GRID_COLUMNS + METRIC_KEYS), problems
    fixed = [c for c in GRID_COLUMNS + METRIC_KEYS if c in frame.columns]
    evals = sorted(c for c in frame.columns if c.startswith("eval.") or c == "eval_status")
    rest = sorted(c for c in frame.columns if c not in fixed and c not in evals)
    frame = frame[fixed + rest + evals].sort_values("cell_id", kind="stable").reset_index(drop=True)
    return frame, problems


def write_summary(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``summary.csv`` (deterministic: fixed row and column order, no timestamps)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, lineterminator="\n")
    return path


MAPS_RANK = {"none": 0, "res": 1, "res+pre": 2, "res+pre+post": 3}


def scale_key(scale: Any) -> tuple[int, ...]:
    """``d128-b6`` sorts after ``d64-b12`` (numbers compared as numbers)."""
    return tuple(int(x) for x in re.findall(r"\d+", str(scale)))


def by_seed(rows: pd.DataFrame, column: str) -> dict[Any, float]:
    """``seed -> value`` of one column (the cell id stands in for an unknown seed)."""
    if column not in rows:
        return {}
    return {(r["cell_id"] if pd.isna(r["seed"]) else int(r["seed"])): r[column] for _, r in rows.iterrows()}


def fmt_float(value: Any) -> str:
    """``0.001`` -> ``0.001``; NaN -> ``?``."""
    return "?" if pd.isna(value) else f"{value:g}"


def group_label(key: GroupKey) -> str:
    """``mhc n=4 d64-b2 res+pre+post lr=0.001 clip=1 mix=0`` for a group key."""
    n_txt = "?" if pd.isna(key.n) else int(key.n)
    return (f"{key.variant} n={n_txt} {key.scale} {key.maps} lr={fmt_float(key.lr)} "
            f"clip={fmt_float(key.grad_clip)} mix={fmt_float(key.mix_weight)}")


def short_label(key: GroupKey) -> str:
    """``mhc n=4 d64-b2`` (plus the map set, lr, clip or mix where they are not the usual)."""
    n_txt = "?" if pd.isna(key.n) else int(key.n)
    parts = [str(key.variant), f"n={n_txt}", str(key.scale)]
    if key.maps not in (BASELINE_MAPS, "res+pre+post"):
        parts.append(str(key.maps))
    if not pd.isna(key.mix_weight) and key.mix_weight > 0:
        parts.append(f"mix={fmt_float(key.mix_weight)}")
    return " ".join(parts)


def _num_order(value: Any) -> float:
    return -1.0 if pd.isna(value) else float(value)


def group_order(key: GroupKey) -> tuple[Any, ...]:
    """Baseline, hc, mhc; then n, scale (numbers as numbers), map set, lr, clip, mixing."""
    return (VARIANT_ORDER.get(key.variant, 9), str(key.variant), _num_order(key.n), scale_key(key.scale),
            MAPS_RANK.get(key.maps, 9), str(key.maps), _num_order(key.lr), _num_order(key.grad_clip),
            _num_order(key.mix_weight))


def sorted_groups(frame: pd.DataFrame) -> list[tuple[GroupKey, pd.DataFrame]]:
    """Groups of ``GroupKey`` in a stable, readable order (see :func:`group_order`)."""
    if frame.empty:
        return []
    keyed = frame.copy()
    keyed["variant"] = keyed["variant"].fillna("?")
    for column in GROUP_KEY:  # frames from older summaries may lack a key column
        if column not in keyed:
            keyed[column] = math.nan
    groups = [(GroupKey(*key), rows) for key, rows in keyed.groupby(GROUP_KEY, dropna=False, sort=False)]
    return sorted(groups, key=lambda item: group_order(item[0]))


def bench_environment(bench: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(hardware, versions)`` recorded by the benchmark (``meta.environment`` in bench.json)."""
    bench = bench or {}
    env = dict((bench.get("meta") or {}).get("environment") or bench.get("hardware") or {})
    versions = env.pop("versions", None) or bench.get("versions") or {}
    return env, versions
