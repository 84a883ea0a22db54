"""How the composite gain grows with depth (the ``depth`` experiment, claim C3).

The paper's composite gain is that of the suffix product Q_l = H_{L-1} ... H_l, maximised
over l, so for a product of L similar matrices it grows roughly geometrically in the number
of residual layers L (= 2 x transformer blocks). The fit is therefore log-linear,
``log(gain) = a + b L`` by least squares over the cells (each seed one point), and
``exp(b)`` is the growth factor per residual layer, with a t-based 95 % CI (N - 2 degrees
of freedom). The depth at which the fit would reach the paper's ~3000 is an extrapolation
far outside the depths trained and is labelled as one wherever it is shown.

Only completed cells enter the fit: a diverged cell's final gain is not that of a trained
model (often not finite at all); those cells are counted and named instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
from scipy.stats import linregress

from mhc_bench.report import paper
from mhc_bench.report.compare import completed, diverged
from mhc_bench.report.stats import Estimate, estimate, t975

DIRECTIONS = {"fwd": ("max_composite_fwd",), "bwd": ("max_composite_bwd",),
              "max": ("max_composite_fwd", "max_composite_bwd")}


def composite_gain(rows: pd.DataFrame, direction: str = "max") -> pd.Series:
    """Per cell: the forward, backward, or the larger of both composite gains (NaN if unknown)."""
    cols = [c for c in DIRECTIONS[direction] if c in rows]
    if not cols:
        return pd.Series(math.nan, index=rows.index)
    return rows[cols].astype(float).max(axis=1, skipna=True)


def layers(rows: pd.DataFrame) -> pd.Series:
    """The paper's L (residual layers) per cell: 2 x transformer blocks."""
    if "residual_layers" in rows and rows["residual_layers"].notna().all():
        return rows["residual_layers"].astype(float)
    return 2.0 * rows["n_layer"].astype(float)


@dataclass(frozen=True)
class DepthPoint:
    """One depth of one variant: the gain's mean and 95 % CI over completed seeds."""

    layers: int
    blocks: int
    gain: Estimate
    cells: int
    diverged: int


def depth_points(rows: pd.DataFrame, direction: str) -> list[DepthPoint]:
    """One point per depth (rows: one variant's cells of the depth experiment)."""
    if rows.empty:
        return []
    out = []
    depth = layers(rows)
    for L in sorted({int(v) for v in depth.dropna()}):
        at = rows[depth == L]
        done = completed(at)
        out.append(DepthPoint(L, L // 2, estimate(composite_gain(done, direction)), len(at),
                              len(diverged(at))))
    return out


@dataclass(frozen=True)
class GrowthFit:
    """``log(gain) = intercept + slope x L`` over the cells; the CI is the slope's."""

    points: int
    depths: tuple[int, ...]
    slope: float
    half: float | None  # half width of the slope's 95 % CI (None with fewer than 3 points)
    intercept: float

    @property
    def factor(self) -> float:
        """Growth of the gain per residual layer."""
        return math.exp(self.slope)

    @property
    def factor_low(self) -> float:
        return math.exp(self.slope - self.half) if self.half is not None else math.nan

    @property
    def factor_high(self) -> float:
        return math.exp(self.slope + self.half) if self.half is not None else math.nan

    def reaches(self, target: float = paper.HC_PEAK) -> float | None:
        """Residual layers at which the fitted line reaches ``target`` (an extrapolation);
        None when the fit does not grow."""
        if self.slope <= 0:
            return None
        return (math.log(target) - self.intercept) / self.slope


def fit_growth(rows: pd.DataFrame, direction: str = "max") -> GrowthFit | None:
    """Least-squares fit of log(gain) on L over completed cells with a finite positive gain;
    None with fewer than two depths."""
    done = completed(rows)
    gain, depth = composite_gain(done, direction), layers(done)
    ok = gain.notna() & depth.notna() & (gain > 0) & gain.map(math.isfinite)
    xs, ys = [float(v) for v in depth[ok]], [math.log(float(v)) for v in gain[ok]]
    if len(set(xs)) < 2:
        return None
    n = len(xs)
    fit = linregress(xs, ys)
    # linregress's stderr is the slope's standard error (N - 2 degrees of freedom); with two
    # points the line is exact and there is no interval.
    half = t975(n - 2) * float(fit.stderr) if n > 2 else None
    slope, intercept = float(fit.slope), float(fit.intercept)
    return GrowthFit(n, tuple(sorted({int(x) for x in xs})), slope, half, intercept)


def settings(rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The depth experiment's series: one per (n, width), depth varying; variants side by side."""
    if rows.empty:
        return []
    out = []
    for (n, width), group in rows.groupby(["n", "d_model"], dropna=False, sort=True):
        out.append((f"n={'?' if pd.isna(n) else int(n)}, d_model {'?' if pd.isna(width) else int(width)}",
                    group))
    return out
