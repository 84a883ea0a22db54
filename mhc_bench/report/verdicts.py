"""What a rule gets and gives: the evidence, the outcome, the verdicts, and the selection of cells.

Verdicts (fixed before looking at results, MHC_NOTES.md section 3b):

- ``reproduced`` / ``not reproduced``: the evidence decides, in the setting the paper measured,
  with an interval that includes seed and numerical noise;
- ``underpowered``: the interval includes 0 and the minimum detectable effect exceeds the
  paper's effect (the reason names the seeds that would settle it);
- ``degenerate``: the setting cannot test the claim (the n streams collapsed onto one, so the
  "n-stream" model is the baseline plus gates); reported, not judged;
- ``inconclusive``: anything else (missing cells, no signal, no instability reached);
- ``finding``: not a claim of the paper but a labelled measurement (X rows: stress tests).

Each outcome carries a one-sentence ``summary`` (the scorecard's summary table) and the full
``reason``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mhc_bench.report.compare import in_experiment, trained
from mhc_bench.report.perf_model import PerfModel

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
UNDERPOWERED, DEGENERATE, FINDING = "underpowered", "degenerate", "finding"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, UNDERPOWERED, DEGENERATE, INCONCLUSIVE, FINDING)


@dataclass
class Evidence:
    """What the rules may look at: the summary frame, per-cell probe histories and final gains,
    the benchmark, and the kernels' performance model (predictions, shown but never judged)."""

    frame: pd.DataFrame
    histories: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    bench: dict[str, Any] | None = None
    gains: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    perf_model: PerfModel | None = None


@dataclass
class Outcome:
    """A verdict with the measured value, the reason and the cells (or bench rows) it rests on;
    ``summary`` is the reason in one sentence (the reason's first clause when not given)."""

    verdict: str
    value: str
    reason: str
    rows: pd.DataFrame | None = None
    scale: str | None = None  # set directly when the evidence is not training cells
    summary: str = ""

    def __post_init__(self) -> None:
        if not self.summary:
            self.summary = first_clause(self.reason)


def first_clause(text: str, limit: int = 160) -> str:
    """The reason's first clause (up to ``;``), cut at ``limit`` characters on a word."""
    clause = text.split("; ")[0].strip()
    if len(clause) <= limit:
        return clause
    return clause[:limit].rsplit(" ", 1)[0] + " ..."


RULES: dict[str, Callable[..., Outcome]] = {}


def rule(fn: Callable[..., Outcome]) -> Callable[..., Outcome]:
    RULES[fn.__name__] = fn
    return fn


def missing_experiment(ev: Evidence, name: str) -> str:
    """Why an experiment has nothing to judge: absent from the profile, or not trained yet."""
    if in_experiment(ev.frame, name).empty:
        return f"this profile runs no {name} experiment"
    return f"the {name} experiment has no trained cells yet"


def no_experiment(ev: Evidence, name: str) -> Outcome:
    return Outcome(INCONCLUSIVE, "—", missing_experiment(ev, name))


def trained_cells(
    ev: Evidence, variant: str | None = None, maps: str | None = None, n: int | None = None,
    experiment: str | None = None,
) -> pd.DataFrame:
    """Trained cells (completed, diverged or stopped), optionally of one experiment, variant, map set, n."""
    rows = trained(ev.frame) if not ev.frame.empty else ev.frame
    if rows.empty:
        return rows
    if experiment is not None:
        rows = in_experiment(rows, experiment)
    if variant is not None:
        rows = rows[rows["variant"] == variant]
    if maps is not None:
        rows = rows[rows["maps"] == maps]
    if n is not None:
        rows = rows[rows["n"] == n]
    return rows


def combine(verdicts: list[str]) -> str:
    """One verdict from several settings' verdicts: any "not reproduced" wins; all "reproduced" is
    reproduced; else degenerate, then underpowered, then inconclusive."""
    if not verdicts:
        return INCONCLUSIVE
    if NOT_REPRODUCED in verdicts:
        return NOT_REPRODUCED
    if all(v == REPRODUCED for v in verdicts):
        return REPRODUCED
    for verdict in (DEGENERATE, UNDERPOWERED):
        if verdict in verdicts:
            return verdict
    return INCONCLUSIVE


def concat(frames: list[pd.DataFrame | None]) -> pd.DataFrame | None:
    kept = [f for f in frames if f is not None and not f.empty]
    return pd.concat(kept).drop_duplicates("cell_id") if kept else None


def default_knobs(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(rows with every knob at its variant's default, rows with some knob changed)``. A variant's
    defaults are the method as published (mHC: 20 Sinkhorn iterations), so a claim about the method is
    judged on the first; a swept knob (``sinkhorn_iters: [1, ...]``) is a study of its own (X2)."""
    if "knobs" not in rows:
        return rows, rows.iloc[0:0]
    changed = rows["knobs"].fillna("").astype(str).str.strip() != ""
    return rows[~changed], rows[changed]


def recipe_split(rows: pd.DataFrame, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, float | None]:
    """``(on-recipe rows, off-recipe rows, recipe lr)``: the recipe is the main experiment's (gradient
    clipping on, its learning rate); a cell trained without clipping or above that lr is a stress cell.
    Without a main experiment the recipe lr is the largest lr of a clipped cell."""
    if rows.empty or "grad_clip" not in rows:
        return rows, rows.iloc[0:0], None
    main = trained(in_experiment(frame, "main"))
    clipped_main = main[main["grad_clip"].fillna(0) > 0] if "grad_clip" in main else main.iloc[0:0]
    pool = clipped_main if not clipped_main.empty else rows[rows["grad_clip"].fillna(0) > 0]
    recipe_lr = float(pool["lr"].max()) if not pool.empty else None
    if recipe_lr is None:
        return rows.iloc[0:0], rows, None
    on = (rows["grad_clip"].fillna(0) > 0) & (rows["lr"] <= recipe_lr * (1 + 1e-9))
    return rows[on], rows[~on], recipe_lr


def published_recipe_split(
    rows: pd.DataFrame, frame: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame, float | None, pd.DataFrame]:
    """``(recipe rows, off-recipe stress rows, recipe lr, rows with changed knobs)``: only cells of the
    method as published (every knob at its default) are the recipe's (C1/C2) or its stress test's (X1)."""
    published, tuned = default_knobs(rows)
    return (*recipe_split(published, frame), tuned)


def collapsed(rows: pd.DataFrame, threshold: float) -> tuple[bool, float]:
    """Whether a group's streams collapsed: the median over its cells of the final layer's stream spread
    below ``threshold``; and that median (NaN without values)."""
    if "final_stream_spread" not in rows:
        return False, float("nan")
    spreads = rows["final_stream_spread"].dropna()
    if spreads.empty:
        return False, float("nan")
    median = float(spreads.median())
    return median < threshold, median
