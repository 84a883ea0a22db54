"""Selecting and comparing cells: the shared ground of the tables (which format) and the rules (which judge).

Everything here computes; nothing formats a table or gives a verdict. Cells are picked by
experiment (the profile's grid blocks name the experiment each serves), by training state,
and matched to their baseline; loss gaps are differences over seeds with 95 % CIs.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from mhc_bench import variants
from mhc_bench.report.aggregate import COMPARE_KEY, GroupKey, by_seed, scale_key, sorted_groups
from mhc_bench.report.stats import Estimate, difference, estimate

# Experiments a profile's grid blocks can serve, and what they settle (workflows/config/*.yaml).
EXPERIMENTS = ("main", "depth", "frontier", "n_sweep", "ablation", "downstream")
# Cells whose config names no experiment (results from before experiments were labelled) are
# read as the main experiment's.
UNLABELLED = "main"


def experiments_of(value: Any) -> list[str]:
    """``"main+n_sweep"`` -> ``["main", "n_sweep"]``; an unlabelled cell serves ``main``."""
    names = [p for p in str(value).split("+") if p and p != "nan"] if isinstance(value, str) else []
    return names or [UNLABELLED]


def in_experiment(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """The cells that serve experiment ``name`` (a cell may serve several)."""
    if frame.empty or "experiments" not in frame:
        return frame if name == UNLABELLED else frame.iloc[0:0]
    return frame[[name in experiments_of(v) for v in frame["experiments"]]]


def present_experiments(frame: pd.DataFrame) -> list[str]:
    """Experiments with at least one cell, known ones in their fixed order, then any others."""
    found = {e for v in frame.get("experiments", pd.Series(dtype=object)) for e in experiments_of(v)}
    return [e for e in EXPERIMENTS if e in found] + sorted(found - set(EXPERIMENTS))


def trained(rows: pd.DataFrame) -> pd.DataFrame:
    """Cells with a ``metrics.json`` (completed or diverged)."""
    return rows[rows["has_metrics"].astype(bool)] if "has_metrics" in rows else rows


def completed(rows: pd.DataFrame) -> pd.DataFrame:
    """Cells that trained to the end (a diverged cell has no final loss)."""
    rows = trained(rows)
    return rows[rows["status"] == "completed"] if "status" in rows else rows


def diverged(rows: pd.DataFrame) -> pd.DataFrame:
    rows = trained(rows)
    return rows[rows["status"] == "diverged"] if "status" in rows else rows.iloc[0:0]


def select(rows: pd.DataFrame, **equal: Any) -> pd.DataFrame:
    """Rows whose columns equal the given values (NaN equals NaN; an absent column matches NaN)."""
    mask = pd.Series(True, index=rows.index)
    for column, value in equal.items():
        col = rows[column] if column in rows else pd.Series(math.nan, index=rows.index)
        mask &= col.isna() if pd.isna(value) else col == value
    return rows[mask]


def reference_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The reference variant's cells (the plain residual network every gap is measured against)."""
    return frame[frame["variant"] == variants.reference().name]


def is_reference(variant: object) -> bool:
    return variant == variants.reference().name


def baseline_rows(frame: pd.DataFrame, key: GroupKey) -> pd.DataFrame:
    """Baseline cells for a group: same scale and training data; the same learning rate and
    clipping when the profile has them, else any (the tables' notes say so)."""
    base = select(reference_rows(frame), scale=key.scale, mix_weight=key.mix_weight)
    same = select(base, lr=key.lr, grad_clip=key.grad_clip)
    return same if not same.empty else base


def loss_gap(
    frame: pd.DataFrame, rows: pd.DataFrame, key: GroupKey, column: str = "final_val_loss"
) -> Estimate:
    """Group loss minus baseline loss, completed cells only, paired by seed when both sides share seeds."""
    base = completed(baseline_rows(frame, key))
    return difference(by_seed(completed(rows), column), by_seed(base, column))


def matched(rows: pd.DataFrame, variant: str, reference: str) -> tuple[pd.DataFrame, pd.DataFrame, list]:
    """Cells of both variants restricted to the grid cells (:data:`COMPARE_KEY`: all but the variant
    and its knobs) that both have: ``(variant's, reference's, common settings)``."""
    a, b = rows[rows["variant"] == variant], rows[rows["variant"] == reference]
    keys = COMPARE_KEY
    common = sorted(set(map(tuple, a[keys].map(str).values)) & set(map(tuple, b[keys].map(str).values)))
    mask = lambda df: df[keys].map(str).apply(tuple, axis=1).isin(common)  # noqa: E731
    return (a[mask(a)] if common else a.iloc[0:0]), (b[mask(b)] if common else b.iloc[0:0]), common


def gap_estimates(frame: pd.DataFrame, rows: pd.DataFrame, by: str) -> list[tuple[Any, Estimate]]:
    """The loss gap to the baseline of each group in ``rows``, keyed by the group key field ``by``."""
    return [(getattr(key, by), loss_gap(frame, group, key)) for key, group in sorted_groups(rows)]


def column_estimate(rows: pd.DataFrame, column: str) -> Estimate:
    """Mean and 95 % CI over the rows (seeds) of one column; empty if the column is absent."""
    return estimate(rows[column]) if column in rows else estimate([])


def mean(rows: pd.DataFrame, column: str) -> float:
    return column_estimate(rows, column).mean


def values(rows: pd.DataFrame, *columns: str) -> list[float]:
    """Non-NaN values of the columns (inf kept: a blown-up gain must count)."""
    out = []
    for c in columns:
        if c in rows:
            out.extend(float(v) for v in rows[c] if not pd.isna(v))
    return out


def describe_scope(rows: pd.DataFrame | None, experiment: str | None = None) -> str:
    """``main experiment at d128-b6 (n=4, 3 seeds)``: what a reason rests on. Without an
    experiment name, the experiments the rows come from are listed."""
    rows = rows if rows is not None else pd.DataFrame()
    if experiment:
        what = f"{experiment} experiment"
    else:
        names = present_experiments(rows)
        what = f"experiment{'s' if len(names) != 1 else ''} {'+'.join(names) or '?'}"
    if rows.empty:
        return what
    scales = sorted({str(s) for s in rows["scale"].dropna()}, key=scale_key)
    ns = sorted({int(v) for v in rows["n"].dropna()}) if "n" in rows else []
    seeds = rows["seed"].dropna().nunique() if "seed" in rows else 0
    n_txt = f"n={'/'.join(map(str, ns))}, " if ns else ""
    return f"{what} at {'/'.join(scales) or '?'} ({n_txt}{seeds} seed{'s' if seeds != 1 else ''})"
