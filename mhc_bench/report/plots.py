"""The report's figures (PNG, matplotlib Agg), one function per figure.

Lines are cell groups (:class:`~mhc_bench.report.aggregate.GroupKey`) averaged over their
completed seeds with a shaded 95 % CI band (t-based, where two or more seeds exist), each
diverged seed drawn on its own (dotted); a label only names the parts that vary in this
profile. The experiment figures (gain vs depth, stability frontier, loss gap vs n) use only
their experiment's cells. A figure without data is still
written, saying so, so the report's links never break.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from mhc_bench.report import depth as dep
from mhc_bench.report import frontier as fr
from mhc_bench.report import paper
from mhc_bench.report.aggregate import (
    BASELINE_MAPS,
    GROUP_KEY,
    GroupKey,
    eval_tasks,
    fmt_float,
    sorted_groups,
    variant_order,
)
from mhc_bench.report.cells import Cell
from mhc_bench.report.compare import completed, in_experiment, loss_gap, trained
from mhc_bench.report.stats import Estimate, estimate, wilson

MARKER = {
    "baseline": "s",
    "hc": "^",
    "mhc": "o",
}  # colours come from the cycle: groups differ in more than variant
_DPI = 100


def labeller(frame: pd.DataFrame) -> Callable[[GroupKey], str]:
    """Label a group by the key parts that vary across the profile (variant always shown)."""
    varying = [c for c in GROUP_KEY if c == "variant" or (c in frame and frame[c].astype(str).nunique() > 1)]
    names = {"lr": "lr", "grad_clip": "clip", "mix_weight": "mix"}

    def label(key: GroupKey) -> str:
        parts = []
        for col, val in zip(GROUP_KEY, key, strict=True):
            if col not in varying or (col == "maps" and val == BASELINE_MAPS):
                continue
            if col == "n":
                parts.append(f"n={'?' if pd.isna(val) else int(val)}")
            elif col in names:
                parts.append(f"{names[col]}={fmt_float(val)}")
            else:
                parts.append(str(val))
        return " ".join(parts)

    return label


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI, metadata={"Software": None})
    plt.close(fig)
    return path


def _empty(ax: plt.Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} in the results", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _finite(values: list[Any]) -> np.ndarray:
    arr = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
    arr[~np.isfinite(arr)] = np.nan
    return arr


def _diverged(cell: Cell) -> bool:
    return (cell.metrics or {}).get("status") == "diverged"


@dataclass(frozen=True)
class Band:
    """A mean curve over seeds with the half width of its 95 % CI (NaN where fewer than 2 seeds)."""

    x: np.ndarray
    mean: np.ndarray
    half: np.ndarray


def _band(x: list[float], columns: list[list[float]]) -> Band | None:
    """``columns[i]``: the seeds' values at ``x[i]``; mean and t-based 95 % CI per point."""
    ests = [estimate(c) for c in columns]
    if not any(e.n for e in ests):
        return None
    return Band(np.asarray(x, dtype=float), np.array([e.mean for e in ests]),
                np.array([np.nan if e.half is None else e.half for e in ests]))


def _layer_band(cells: list[Cell], key: str) -> Band | None:
    series = [_finite(c.gains[key]) for c in cells if c.gains and isinstance(c.gains.get(key), list)]
    if not series:
        return None
    width = max(len(s) for s in series)
    return _band(list(range(width)), [[s[i] for s in series if i < len(s)] for i in range(width)])


def _step_band(cells: list[Cell], key: str) -> Band | None:
    points: dict[int, list[float]] = {}
    for c in cells:
        for r in c.history:
            s, v = r.get("step"), r.get(key)
            if s is not None and v is not None and math.isfinite(float(v)):
                points.setdefault(int(s), []).append(float(v))
    if not points:
        return None
    steps = sorted(points)
    return _band(steps, [points[s] for s in steps])


def _draw(ax: plt.Axes, band: Band, log: bool, **style: Any) -> Any:
    """The mean line and, where two or more seeds exist, its 95 % CI as a shaded band."""
    y = np.where(band.mean > 0, band.mean, np.nan) if log else band.mean
    if not np.isfinite(y).any():
        return None
    (line,) = ax.plot(band.x, y, ms=4, **style)
    low, high = band.mean - band.half, band.mean + band.half
    if log:
        low = np.where(low > 0, low, np.nan)  # a band reaching 0 cannot be drawn on a log axis
    if np.isfinite(low).any():
        ax.fill_between(band.x, low, high, color=line.get_color(), alpha=0.18, linewidth=0)
    return line


def _groups(frame: pd.DataFrame, cells: dict[str, Cell]) -> list[tuple[GroupKey, list[Cell]]]:
    return [(key, [cells[c] for c in rows["cell_id"] if c in cells]) for key, rows in sorted_groups(frame)]


def _lines(
    axes: list[plt.Axes],
    groups: list[tuple[GroupKey, list[Cell]]],
    label: Callable[[GroupKey], str],
    keys: list[str],
    fetch: Callable[[list[Cell], str], Band | None],
    log: bool,
    what: str,
) -> None:
    for ax, key in zip(axes, keys, strict=True):
        drawn = False
        for gkey, gcells in groups:
            # Diverged seeds get their own dotted line: averaging a run that stopped early with
            # runs that went on would draw a fake drop where it ends.
            ok = [c for c in gcells if not _diverged(c)]
            style = "-" if gkey.maps in ("res+pre+post", BASELINE_MAPS, "?") else "--"
            series = [(ok, label(gkey), style)]
            series += [([c], f"{label(gkey)} {c.cell_id[-6:]} (diverged)", ":")
                       for c in gcells if _diverged(c)]
            colour = None
            for members, name, linestyle in series:
                band = fetch(members, key) if members else None
                if band is None:
                    continue
                line = _draw(ax, band, log, marker=MARKER.get(gkey.variant, "x"), label=name,
                             linestyle=linestyle, color=colour)
                if line is not None:
                    colour = line.get_color()
                    drawn = True
        ax.set_title(key)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if not drawn:
            _empty(ax, f"{what} ({key})")
            continue
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)


def composite_gain_per_layer(frame: pd.DataFrame, cells: dict[str, Cell], out: Path) -> Path:
    """Fig. 3b / 7b analogue: composite Amax gain of Q_l (layer l to the top), log y; the prefix
    gain of P_l (input to layer l), an extra that is not the paper's curve, in its own panel."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    _lines(
        list(axes),
        _groups(frame, cells),
        labeller(frame),
        ["composite_fwd", "composite_bwd", "prefix_fwd"],
        _layer_band,
        True,
        "gains.json",
    )
    titles = ["composite fwd of Q_l (paper's)", "composite bwd of Q_l (paper's)",
              "prefix fwd of P_l (extra, not the paper's)"]
    for ax, title in zip(axes, titles, strict=True):
        ax.set_title(title)
        ax.set_xlabel("residual layer l (input -> output)")
        ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    axes[0].set_ylabel("Amax gain (mean, 95 % CI band over seeds)")
    return _save(fig, out / "composite_gain_per_layer.png")


def stream_spread_per_layer(frame: pd.DataFrame, cells: dict[str, Cell], out: Path) -> Path:
    """How far apart the n streams are after each layer (0 = copies of one vector)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    _lines([ax], _groups(frame, cells), labeller(frame), ["stream_spread"], _layer_band, False, "gains.json")
    ax.set_title("stream spread ||x - mean_i x_i|| / ||x|| (final model)")
    ax.set_xlabel("residual layer (output of)")
    return _save(fig, out / "stream_spread_per_layer.png")


def _over_steps(
    frame: pd.DataFrame, cells: dict[str, Cell], path: Path, keys: list[str], log_y: bool
) -> Path:
    """One panel per ``history.json`` key against the training step, a line per cell group."""
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys) + 1, 4))
    _lines(list(axes), _groups(frame, cells), labeller(frame), keys, _step_band, log_y, "history.json")
    for ax in axes:
        ax.set_xlabel("step")
    return _save(fig, path)


def gain_over_steps(frame: pd.DataFrame, cells: dict[str, Cell], out: Path) -> Path:
    keys = ["max_composite_fwd", "max_composite_bwd", "layer0_fwd"]
    return _over_steps(frame, cells, out / "gain_over_steps.png", keys, True)


def loss_curves(frame: pd.DataFrame, cells: dict[str, Cell], out: Path) -> Path:
    return _over_steps(frame, cells, out / "loss_curves.png", ["train_loss", "val_loss"], False)


def grad_norm(frame: pd.DataFrame, cells: dict[str, Cell], out: Path) -> Path:
    return _over_steps(frame, cells, out / "grad_norm.png", ["grad_norm", "grad_norm_maps"], True)


def accuracy_by_n(frame: pd.DataFrame, out: Path) -> Path:
    """Score vs n per task (baseline at n = 1), mean ± 95 % CI over seeds, chance dashed."""
    tasks = eval_tasks(frame)
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(5 * max(1, len(tasks)), 4), squeeze=False)
    if not tasks:
        _empty(axes[0][0], "eval scores")
        return _save(fig, out / "accuracy_by_n.png")
    label = labeller(frame.assign(n=0))  # n is the x axis, not part of the line label
    for ax, task in zip(axes[0], tasks, strict=True):
        col = f"eval.{task}"
        lines: dict[GroupKey, list[tuple[float, float, float]]] = {}
        for key, rows in sorted_groups(frame):
            est = estimate(rows[col]) if col in rows else estimate([])
            if est.n:
                point = (float(key.n), est.mean, est.half or 0.0)
                lines.setdefault(key._replace(n=0, setting=""), []).append(point)
        for line, pts in lines.items():
            pts.sort()
            ax.errorbar(
                [p[0] for p in pts],
                [p[1] for p in pts],
                yerr=[p[2] for p in pts],
                capsize=3,
                marker=MARKER.get(line.variant, "x"),
                label=label(line),
            )
        chance = frame[f"{col}.chance"].dropna() if f"{col}.chance" in frame else pd.Series(dtype=float)
        if not chance.empty:
            ax.axhline(float(chance.iloc[0]), color="grey", ls="--", lw=1, label="chance")
        ax.set_title(task)
        ax.set_xlabel("n (streams)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if lines:
            ax.legend(fontsize=7)
    return _save(fig, out / "accuracy_by_n.png")


def _variants(rows: pd.DataFrame) -> list[str]:
    return sorted({str(v) for v in rows["variant"].dropna()}, key=lambda v: (variant_order(v), v))


def gain_vs_depth(frame: pd.DataFrame, out: Path) -> Path:
    """Max composite gain against residual layers L (log y), mean and 95 % CI band over seeds per
    variant, seeds as dots, and each variant's log-linear fit dashed (depth experiment only)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    rows = trained(in_experiment(frame, "depth"))
    if rows.empty:
        for ax in axes:
            _empty(ax, "depth experiment")
        return _save(fig, out / "gain_vs_depth.png")
    series_list = dep.settings(rows)
    for ax, direction in zip(axes, ("fwd", "bwd"), strict=True):
        for label, series in series_list:
            for variant in _variants(series):
                mine = series[series["variant"] == variant]
                points = [p for p in dep.depth_points(mine, direction) if p.gain.n]
                if not points:
                    continue
                name = variant if len(series_list) == 1 else f"{variant} {label}"
                band = Band(np.array([p.layers for p in points], dtype=float),
                            np.array([p.gain.mean for p in points]),
                            np.array([np.nan if p.gain.half is None else p.gain.half for p in points]))
                line = _draw(ax, band, True, marker=MARKER.get(variant, "x"), label=f"{name} (mean, 95 % CI)")
                if line is None:
                    continue
                done = completed(mine)
                ax.scatter(dep.layers(done), dep.composite_gain(done, direction), s=10, alpha=0.5,
                           color=line.get_color())
                fit = dep.fit_growth(mine, direction)
                if fit is not None:
                    xs = np.linspace(min(fit.depths), max(fit.depths), 50)
                    ax.plot(xs, np.exp(fit.intercept + fit.slope * xs), ls="--", lw=1, color=line.get_color(),
                            label=f"{name} fit x{fit.factor:.3f}/layer")
        ax.set_yscale("log")
        ax.set_title(f"max composite {direction} gain vs depth (paper's Q_l)")
        ax.set_xlabel("L = residual layers (2 x blocks)")
        ax.axhline(1.0, color="grey", lw=0.8, ls=":")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("Amax gain (log)")
    return _save(fig, out / "gain_vs_depth.png")


def stability_frontier(frame: pd.DataFrame, out: Path) -> Path:
    """Diverged fraction of seeds vs learning rate per variant (frontier experiment), with the 95 %
    Wilson interval of each fraction as a band."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    rows = trained(in_experiment(frame, "frontier"))
    if rows.empty:
        _empty(ax, "frontier experiment")
        return _save(fig, out / "stability_frontier.png")
    series_list = fr.settings(rows)
    for scale, series in series_list:
        for variant in _variants(series):
            for n, cells in fr.variant_rows(series, variant):
                points = fr.lr_points(cells, {}, {})
                if not points:
                    continue
                x = np.array([p.lr for p in points])
                frac = np.array([p.fraction for p in points])
                ci = [wilson(p.diverged, p.cells) for p in points]
                name = f"{variant} n={n}" + (f" {scale}" if len(series_list) > 1 else "")
                (line,) = ax.plot(x, frac, marker=MARKER.get(variant, "x"), label=name)
                ax.fill_between(x, [c[0] for c in ci], [c[1] for c in ci], color=line.get_color(), alpha=0.12,
                                linewidth=0)
                for p in points:
                    ax.annotate(p.seeds_text(), (p.lr, p.fraction), fontsize=7, textcoords="offset points",
                                xytext=(3, 3), color=line.get_color())
    ax.set_xscale("log")
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("learning rate (no gradient clipping)")
    ax.set_ylabel("diverged fraction of seeds")
    ax.set_title("stability frontier (band: 95 % Wilson interval)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, out / "stability_frontier.png")


def loss_gap_vs_n(frame: pd.DataFrame, out: Path) -> Path:
    """Loss gap to the baseline vs n per variant (n_sweep experiment), mean and 95 % CI band;
    the paper's reported mHC gaps as crosses."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    rows = in_experiment(frame, "n_sweep")
    if trained(rows).empty:
        _empty(ax, "n_sweep experiment")
        return _save(fig, out / "loss_gap_vs_n.png")
    label = labeller(rows.assign(n=0))
    lines: dict[GroupKey, list[tuple[float, Estimate]]] = {}
    for key, group in sorted_groups(rows):
        if key.variant == "baseline" or pd.isna(key.n):
            continue
        gap = loss_gap(frame, group, key)
        if gap.n:
            lines.setdefault(key._replace(n=0, setting=""), []).append((float(key.n), gap))
    for line, pts in lines.items():
        pts.sort(key=lambda p: p[0])
        band = Band(np.array([p[0] for p in pts]), np.array([p[1].mean for p in pts]),
                    np.array([np.nan if p[1].half is None else p[1].half for p in pts]))
        _draw(ax, band, False, marker=MARKER.get(line.variant, "x"), label=f"{label(line)} (mean, 95 % CI)")
    ax.scatter(list(paper.N_GAPS), list(paper.N_GAPS.values()), marker="x", color="black",
               label="paper mHC (reported)")
    ax.axhline(0.0, color="grey", lw=0.8, ls=":")
    ax.set_xscale("log", base=2)
    ns = sorted({int(n) for pts in lines.values() for n, _ in pts} | set(paper.N_GAPS))
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.minorticks_off()
    ax.set_xlabel("n (streams)")
    ax.set_ylabel("val loss - baseline's")
    ax.set_title("loss gap vs n")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, out / "loss_gap_vs_n.png")


def make_plots(frame: pd.DataFrame, cells: list[Cell], out: Path) -> list[Path]:
    """Every figure, into ``out`` (the report's ``plots/`` folder)."""
    by_id = {c.cell_id: c for c in cells}
    return [
        composite_gain_per_layer(frame, by_id, out),
        stream_spread_per_layer(frame, by_id, out),
        gain_over_steps(frame, by_id, out),
        loss_curves(frame, by_id, out),
        grad_norm(frame, by_id, out),
        accuracy_by_n(frame, out),
        gain_vs_depth(frame, out),
        stability_frontier(frame, out),
        loss_gap_vs_n(frame, out),
    ]
