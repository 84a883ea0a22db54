"""The stability frontier (the ``frontier`` experiment, claim C4): where each variant starts to diverge.

The frontier experiment sweeps the learning rate without gradient clipping for the baseline,
HC and mHC, several seeds each. Per variant and learning rate this module counts diverged
seeds (the trainer stops a cell on a non-finite loss or grad norm, or a composite gain
above ``train.gain_ceiling``), loss spikes, and where the gain first blew up.

Definitions (also printed under the report's tables):

- **largest stable lr** of a variant: the largest learning rate of the sweep up to which
  (inclusive) no seed diverged at any learning rate. ``None`` when a seed diverges already at
  the smallest learning rate; the sweep's top when nothing diverged (the true frontier is
  then above the sweep).
- **first blown-up layer** of a cell: walk its probes in step order (``history.json``, then
  the final model's ``gains.json``); at the first probe where some residual layer's
  single-layer forward gain exceeds ``threshold`` or is not finite, that is the lowest such
  layer (0 = the layer facing the embedding, the reproduction's canary) and the step.
  "all" when every layer is non-finite at once (a NaN model tells nothing about where).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from mhc_bench.report.compare import completed, diverged, trained

BLOWUP_GAIN = 10.0  # default threshold on a single layer's forward gain (claims.yaml's C4 sets it)


@dataclass(frozen=True)
class Blowup:
    """Where a cell's gain first blew up: the layer (None: every layer non-finite) and the step."""

    layer: int | None
    step: int | None

    def text(self) -> str:
        where = "all layers non-finite" if self.layer is None else f"layer {self.layer}"
        return where + ("" if self.step is None else f" @ {self.step}")


def _blown(gains: list[Any], threshold: float) -> list[int]:
    out = []
    for i, g in enumerate(gains):
        value = math.nan if g is None else float(g)
        if not math.isfinite(value) or value > threshold:
            out.append(i)
    return out


def first_blowup(history: list[dict[str, Any]], final: dict[str, Any] | None, threshold: float,
                 final_step: int | None = None) -> Blowup | None:
    """The first probe at which a layer's single forward gain exceeds ``threshold`` (see module doc)."""
    probes = [(h.get("step"), h["single_fwd"]) for h in sorted(history, key=lambda h: h.get("step", 0))
              if isinstance(h.get("single_fwd"), list)]
    if final and isinstance(final.get("single_fwd"), list):
        probes.append((final_step, final["single_fwd"]))
    for step, gains in probes:
        if not gains:
            continue
        blown = _blown(gains, threshold)
        if blown:
            return Blowup(None if len(blown) == len(gains) and all(g is None for g in gains) else blown[0],
                          step)
    return None


@dataclass(frozen=True)
class LrPoint:
    """One variant at one learning rate: its seeds' outcomes."""

    lr: float
    cells: int  # trained cells (seeds)
    diverged: int
    diverged_steps: tuple[int, ...]
    spikes: tuple[int, ...]  # loss spikes per trained cell
    blowups: tuple[str, ...]  # first blown-up layer per trained cell ("—": none)
    grad_clip: tuple[float, ...]
    val_loss: tuple[float, ...]  # completed cells' final validation losses

    @property
    def fraction(self) -> float:
        return self.diverged / self.cells if self.cells else math.nan

    def seeds_text(self) -> str:
        return f"{self.diverged}/{self.cells}"


def lr_points(rows: pd.DataFrame, histories: dict[str, list[dict[str, Any]]],
              gains: dict[str, dict[str, Any] | None], threshold: float = BLOWUP_GAIN) -> list[LrPoint]:
    """One point per learning rate (rows: one variant's cells at one scale and n)."""
    out = []
    done = trained(rows)
    for lr in sorted({float(v) for v in done["lr"].dropna()}):
        at = done[done["lr"] == lr]
        div = diverged(at)
        blowups = []
        for _, r in at.iterrows():
            steps = None if pd.isna(r.get("steps_done")) else int(r["steps_done"])
            b = first_blowup(histories.get(r["cell_id"], []), gains.get(r["cell_id"]), threshold, steps)
            blowups.append("—" if b is None else b.text())
        out.append(LrPoint(
            lr=lr,
            cells=len(at),
            diverged=len(div),
            diverged_steps=tuple(int(s) for s in div.get("stopped_step", []) if not pd.isna(s)),
            spikes=tuple(int(s) for s in at.get("spike_count", []) if not pd.isna(s)),
            blowups=tuple(blowups),
            grad_clip=tuple(sorted({float(c) for c in at.get("grad_clip", []) if not pd.isna(c)})),
            val_loss=tuple(float(v) for v in completed(at).get("final_val_loss", []) if not pd.isna(v)),
        ))
    return out


@dataclass(frozen=True)
class Frontier:
    """A variant's largest stable learning rate over a sweep."""

    stable_lr: float | None  # None: diverges already at the smallest lr
    top: float  # the sweep's largest lr
    any_diverged: bool

    @property
    def rank(self) -> float:
        """For comparisons: -inf when unstable everywhere, +inf when stable across the sweep."""
        if not self.any_diverged:
            return math.inf
        return -math.inf if self.stable_lr is None else self.stable_lr

    def text(self) -> str:
        if not self.any_diverged:
            return f">= {self.top:g} (no seed diverged in the sweep)"
        if self.stable_lr is None:
            return "below the sweep (diverged at its smallest lr)"
        return f"{self.stable_lr:g}"


def frontier(points: list[LrPoint]) -> Frontier | None:
    """The largest lr up to which no seed diverged (see the module doc); None without points."""
    points = [p for p in points if p.cells]
    if not points:
        return None
    stable = None
    for p in points:  # ascending lr
        if p.diverged:
            break
        stable = p.lr
    return Frontier(stable, points[-1].lr, any(p.diverged for p in points))


def settings(rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The frontier experiment's series: one per scale, lr varying; variants side by side."""
    if rows.empty:
        return []
    return [(str(scale), group) for scale, group in rows.groupby("scale", dropna=False, sort=True)]


def variant_rows(rows: pd.DataFrame, variant: str) -> list[tuple[int, pd.DataFrame]]:
    """One variant's cells in a frontier series, per n (full map set only: the frontier compares
    whole variants)."""
    mine = rows[rows["variant"] == variant]
    mine = mine[mine["maps"].isin(["res+pre+post", "-"])]  # "-": a variant without maps
    return [(int(n), g) for n, g in mine.groupby("n", sort=True) if not pd.isna(n)]
