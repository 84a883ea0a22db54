"""Downstream scores next to chance: which cells C8 is judged on and whether any score left chance.

C8 is judged on the ``downstream`` experiment (cells trained with task-format text mixed in,
scored on held-out items of the same generators); a profile without one falls back to the
``main`` experiment's scores, and every sentence built from this module says which it used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from mhc_bench.report.aggregate import GroupKey, eval_tasks, short_label, sorted_groups
from mhc_bench.report.cells import SCORED_EXPERIMENTS
from mhc_bench.report.compare import experiments_of, in_experiment, mean
from mhc_bench.report.stats import Estimate, at_chance, estimate, no_signal

DOWNSTREAM, FALLBACK = "downstream", "main"

AT_CHANCE, ABOVE, BELOW = "at chance", "above chance", "below chance"
NO_SIGNAL, ABOVE_ZERO = "no signal (0)", "above 0 (no chance level)"


@dataclass(frozen=True)
class TaskScore:
    """One task's score for one group of cells, classified against chance."""

    metric: str
    scored: int  # cells with a score
    estimate: Estimate
    chance: float  # NaN: no chance level (generated answers)
    stderr: float
    signal: str  # one of the labels above, "—" without scores

    @property
    def left_chance(self) -> bool:
        """Above chance, or above 0 where there is no chance level, beyond noise."""
        return self.signal in (ABOVE, ABOVE_ZERO)


def classify(est: Estimate, chance: float, stderr: float) -> str:
    """The signal label of a score (CI over seeds, or 1.96 x the task's stderr with one seed)."""
    if est.n == 0:
        return "—"
    if math.isnan(chance):
        return NO_SIGNAL if no_signal(est, None, stderr) else ABOVE_ZERO
    if at_chance(est, chance, stderr):
        return AT_CHANCE
    return ABOVE if est.mean > chance else BELOW


def task_score(rows: pd.DataFrame, task: str) -> TaskScore:
    col = f"eval.{task}"
    scored = rows[rows[col].notna()] if col in rows else rows.iloc[0:0]
    est = estimate(scored[col]) if col in scored else estimate([])
    chance, stderr = mean(scored, f"{col}.chance"), mean(scored, f"{col}.stderr")
    metric = next((m for m in scored.get(f"{col}.metric", []) if isinstance(m, str)), "?")
    return TaskScore(metric, len(scored), est, chance, stderr, classify(est, chance, stderr))


def scored_experiment(rows: pd.DataFrame) -> bool:
    """Whether any of the cells serves an experiment whose claims read eval scores."""
    return any(name in SCORED_EXPERIMENTS for v in rows.get("experiments", pd.Series([None] * len(rows)))
               for name in experiments_of(v))


def downstream_cells(frame: pd.DataFrame) -> tuple[pd.DataFrame, str, bool]:
    """``(cells, experiment, fell_back)``: the downstream experiment's cells, else main's."""
    rows = in_experiment(frame, DOWNSTREAM)
    if not rows.empty:
        return rows, DOWNSTREAM, False
    return in_experiment(frame, FALLBACK), FALLBACK, True


def signals(rows: pd.DataFrame) -> list[tuple[str, GroupKey, TaskScore]]:
    """Every (task, group) with at least one score."""
    out = []
    for task in eval_tasks(rows):
        for key, group in sorted_groups(rows):
            score = task_score(group, task)
            if score.scored:
                out.append((task, key, score))
    return out


def left_chance_sentence(frame: pd.DataFrame) -> str:
    """One plain sentence: did any score leave chance in the experiment that judges C8?"""
    rows, experiment, fell_back = downstream_cells(frame)
    where = f"In the {experiment} experiment" + (
        " (this profile runs no downstream experiment)" if fell_back else "")
    found = signals(rows)
    if not found:
        return f"{where}: no eval scores."
    left = [f"{task} {short_label(key)} {score.estimate.mean:.3f}" for task, key, score in found
            if score.left_chance]
    if not left:
        return f"{where} no task left chance: every score is at chance or indistinguishable from 0."
    return f"{where} these scores left chance: " + "; ".join(left) + "."
