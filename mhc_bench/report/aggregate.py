"""One tidy row per cell: grid columns, every metric and every eval score (``summary.csv``).

Grid values come from the cell's config (``config.yaml`` as trained, else ``cell.yaml``
as asked), falling back to ``metrics.json`` when there is neither. ``scale`` is
``d<d_model>-b<n_layer>`` (width and transformer blocks; the paper's L counts residual layers,
``residual_layers`` = 2 x blocks) and ``maps`` a label made from the learned maps' content
(``none``, ``res``, ``res+pre``, ``res+pre+post``; ``-`` for a variant without maps, the
baseline), so the report never depends on the profile's names for map sets; ``knobs`` lists
the variant's other knobs that differ from their defaults (``sinkhorn_iters=5``). Metric
columns are the fields of :class:`mhc_bench.cellfolder.Metrics`.

Groups are *settings*: a cell's identity without its seed (``setting``, a hash:
:func:`mhc_bench.cellconfig.setting_hash`), never a hand-picked subset of columns, so two
cells that differ in anything but the seed never average; two cells of one setting with the
same seed fail the report (:func:`check_settings`).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from mhc_bench import variants
from mhc_bench.cellfolder import GAIN_METRICS, PEAK_GAINS, Metrics
from mhc_bench.definitions import PROBE_VERSION
from mhc_bench.errors import UserError
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
    "rerun",
    "maps",
    "knobs",
    "lr",
    "grad_clip",
    "mix_weight",
    "setting",
    "residual_layers",
    "experiments",
    "steps",
    "batch_size",
    "seq_len",
]


class GroupKey(NamedTuple):
    """One group (setting) of cells, seeds varying inside it, with the columns tables show.

    ``setting`` decides the grouping; the other fields are what every cell of the group has in
    common, for labels and for matching groups of different variants (:data:`COMPARE_KEY`).
    """

    variant: str
    n: float
    scale: str
    maps: str
    lr: float
    grad_clip: float
    mix_weight: float
    knobs: str = ""
    setting: str = ""


GROUP_KEY = list(GroupKey._fields)
# What a group of one variant shares with its counterpart of another (the same experiment cell
# of the grid): everything but the variant, its knobs and the setting hash.
COMPARE_KEY = ["n", "scale", "maps", "lr", "grad_clip", "mix_weight"]
# Metrics fields that duplicate grid columns (checked against the config, not repeated).
_GRID_IN_METRICS = {"cell_id": "cell_id", "variant": "variant", "n_streams": "n", "seed": "seed"}
# Scalar metrics only: lists (spike steps) and mappings (execution settings) stay in metrics.json.
METRIC_KEYS = [k for k, f in Metrics.model_fields.items()
               if k not in _GRID_IN_METRICS and f.annotation not in (list[int], dict[str, Any] | None)]
# Probe results: blanked (and the cell listed) when measured under another probe definition.
PROBE_COLUMNS = (*(k for k in GAIN_METRICS if k != "probe_version"), *(f"peak_{k}" for k in PEAK_GAINS))
MAP_ORDER = ("res", "pre", "post")
BASELINE_MAPS = "-"  # the map label of a variant without maps (the baseline)


def variant_order(name: Any) -> int:
    """Registry order: the reference first, then the built-ins, then plug-ins; unknown names last."""
    known = variants.names()
    return known.index(name) if name in known else len(known)


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
    from mhc_bench.cellconfig import setting_hash

    model, train = cfg.model, cfg.train
    spec = variants.get(model.variant)
    knobs = {k: v for k, v in model.mixing.changed().items() if k != "maps"}
    row = {
        "cell_id": cell.cell_id,
        "name": cfg.name,
        "variant": model.variant,
        "n": model.n_streams,
        "scale": f"d{model.d_model}-b{model.n_layer}",  # width and blocks (2 residual layers each)
        "d_model": model.d_model,
        "n_layer": model.n_layer,
        "seed": train.seed,
        "rerun": train.rerun,  # 1: a numerical replicate of the seed's cell (reference kernels)
        # A variant without maps (the baseline) gets "-", not "n/a": pandas reads that back as NaN.
        "maps": spec.maps_label(model.mixing),
        "knobs": " ".join(f"{k}={_knob_text(v)}" for k, v in sorted(knobs.items())),
        "lr": train.lr,
        "grad_clip": train.grad_clip,
        "mix_weight": cfg.data.mix_weight,  # share of task-format text mixed into training
        "setting": setting_hash(cfg),
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


def _knob_text(value: Any) -> str:
    return "+".join(map(str, value)) if isinstance(value, list) else f"{value:g}" if isinstance(
        value, float) else str(value)


def check_settings(frame: pd.DataFrame) -> None:
    """Two cells of one setting must not share a seed (they would average as if they were two)."""
    if frame.empty or "setting" not in frame or "seed" not in frame:
        return
    keyed = frame.dropna(subset=["setting"])
    columns = ["setting", "seed", "rerun"] if "rerun" in keyed else ["setting", "seed"]
    clash = keyed[keyed.duplicated(columns, keep=False)]
    if not clash.empty:
        cells = ", ".join(sorted(clash["cell_id"].astype(str)))
        raise UserError(f"cells {cells} have the same setting and seed: one of them is a copy or was "
                        "trained under other defaults; remove the stale one before building the report")


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
    check_settings(frame)
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
    """``seed -> value`` of one column: the mean over a seed's numerical replicates (``rerun``) where it
    has several finite ones, else its value as recorded (a blown-up inf stays; the cell id stands in for
    an unknown seed)."""
    out: dict[Any, float] = {}
    for seed, vals in by_seed_and_rerun(rows, column).items():
        finite = [v for v in vals if math.isfinite(v)]
        out[seed] = sum(finite) / len(finite) if finite else vals[0]
    return out


def by_seed_and_rerun(rows: pd.DataFrame, column: str) -> dict[Any, list[float]]:
    """``seed -> [value of rerun 0, rerun 1, ...]`` of one column (finite values first kept as given)."""
    out: dict[Any, list[float]] = {}
    if column not in rows:
        return out
    ordered = rows.sort_values("rerun") if "rerun" in rows else rows
    for _, r in ordered.iterrows():
        seed = r["cell_id"] if pd.isna(r["seed"]) else int(r["seed"])
        value = r[column]
        out.setdefault(seed, []).append(math.nan if value is None or pd.isna(value) else float(value))
    return out


def fmt_float(value: Any) -> str:
    """``0.001`` -> ``0.001``; NaN -> ``?``."""
    return "?" if pd.isna(value) else f"{value:g}"


def group_label(key: GroupKey) -> str:
    """``mhc n=4 d64-b2 res+pre+post lr=0.001 clip=1 mix=0`` (plus knobs) for a group key."""
    n_txt = "?" if pd.isna(key.n) else int(key.n)
    knobs = f" {key.knobs}" if isinstance(key.knobs, str) and key.knobs else ""
    return (f"{key.variant} n={n_txt} {key.scale} {key.maps}{knobs} lr={fmt_float(key.lr)} "
            f"clip={fmt_float(key.grad_clip)} mix={fmt_float(key.mix_weight)}")


def short_label(key: GroupKey) -> str:
    """``mhc n=4 d64-b2`` (plus the map set, lr, clip or mix where they are not the usual)."""
    n_txt = "?" if pd.isna(key.n) else int(key.n)
    parts = [str(key.variant), f"n={n_txt}", str(key.scale)]
    if key.maps not in (BASELINE_MAPS, "res+pre+post"):
        parts.append(str(key.maps))
    if isinstance(key.knobs, str) and key.knobs:
        parts.append(key.knobs)
    if not pd.isna(key.mix_weight) and key.mix_weight > 0:
        parts.append(f"mix={fmt_float(key.mix_weight)}")
    return " ".join(parts)


def _num_order(value: Any) -> float:
    return -1.0 if pd.isna(value) else float(value)


def group_order(key: GroupKey) -> tuple[Any, ...]:
    """Baseline, hc, mhc; then n, scale (numbers as numbers), map set, lr, clip, mixing."""
    return (variant_order(key.variant), str(key.variant), _num_order(key.n), scale_key(key.scale),
            MAPS_RANK.get(key.maps, 9), str(key.maps), _num_order(key.lr), _num_order(key.grad_clip),
            _num_order(key.mix_weight), _knob_order(key.knobs))


def _knob_order(knobs: Any) -> tuple[Any, ...]:
    """``sinkhorn_iters=5`` sorts before ``sinkhorn_iters=20`` (numbers compared as numbers)."""
    text = knobs if isinstance(knobs, str) else ""
    return tuple((0, float(p), "") if re.fullmatch(r"-?[\d.]+(e-?\d+)?", p) else (1, 0.0, p)
                 for p in re.split(r"[= ]", text) if p)


def sorted_groups(frame: pd.DataFrame) -> list[tuple[GroupKey, pd.DataFrame]]:
    """The settings' groups (:class:`GroupKey`) in a stable, readable order (see :func:`group_order`).

    Cells group by ``setting``; a cell without one (no config, or an older summary) groups by the
    key's columns instead.
    """
    if frame.empty:
        return []
    keyed = frame.copy()
    keyed["variant"] = keyed["variant"].fillna("?")
    for column in GROUP_KEY:  # frames from older summaries may lack a key column
        if column not in keyed:
            keyed[column] = "" if column in ("knobs", "setting") else math.nan
    keyed["knobs"] = keyed["knobs"].astype(object).fillna("")
    fallback = keyed[GROUP_KEY[:-1]].map(str).agg("|".join, axis=1)
    keyed["setting"] = keyed["setting"].fillna("").astype(str)
    keyed["_group"] = keyed["setting"].where(keyed["setting"] != "", "?" + fallback)
    groups = [(GroupKey(*rows.iloc[0][GROUP_KEY]), rows.drop(columns="_group"))
              for _, rows in keyed.groupby("_group", dropna=False, sort=False)]
    return sorted(groups, key=lambda item: group_order(item[0]))


def bench_environment(bench: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(hardware, versions)`` recorded by the benchmark (``meta.environment`` in bench.json)."""
    bench = bench or {}
    env = dict((bench.get("meta") or {}).get("environment") or bench.get("hardware") or {})
    versions = env.pop("versions", None) or bench.get("versions") or {}
    return env, versions
