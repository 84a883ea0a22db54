"""The report's figures (PNG, matplotlib Agg), one function per figure.

Lines are cell groups (variant, n, scale, maps, lr) averaged over their completed
seeds, with each diverged seed drawn on its own (dotted); a label only names the
parts that vary in this profile. A figure without data is still
written, saying so, so the report's links never break.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from mhc_bench.report.aggregate import BASELINE_MAPS, GROUP_KEY, eval_tasks, sorted_groups
from mhc_bench.report.cells import Cell
from mhc_bench.report.stats import estimate

MARKER = {
    "baseline": "s",
    "hc": "^",
    "mhc": "o",
}  # colours come from the cycle: groups differ in more than variant
_DPI = 100


def labeller(frame: pd.DataFrame) -> Callable[[tuple[Any, ...]], str]:
    """Label a group by the key parts that vary across the profile (variant always shown)."""
    varying = [c for c in GROUP_KEY if c == "variant" or frame[c].astype(str).nunique() > 1]

    def label(key: tuple[Any, ...]) -> str:
        parts = []
        for col, val in zip(GROUP_KEY, key, strict=True):
            if col not in varying or (col == "maps" and val == BASELINE_MAPS):
                continue
            if col == "n":
                parts.append(f"n={'?' if pd.isna(val) else int(val)}")
            elif col == "lr":
                parts.append(f"lr={val:g}")
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


def _layer_mean(cells: list[Cell], key: str) -> np.ndarray | None:
    series = [_finite(c.gains[key]) for c in cells if c.gains and isinstance(c.gains.get(key), list)]
    if not series:
        return None
    width = max(len(s) for s in series)
    stack = np.full((len(series), width), np.nan)
    for i, s in enumerate(series):
        stack[i, : len(s)] = s
    with np.errstate(all="ignore"):
        return np.nanmean(stack, axis=0) if np.isfinite(stack).any() else None


def _step_mean(cells: list[Cell], key: str) -> pd.Series | None:
    points = [(r.get("step"), r.get(key)) for c in cells for r in c.history]
    points = [
        (int(s), float(v)) for s, v in points if s is not None and v is not None and math.isfinite(float(v))
    ]
    if not points:
        return None
    return pd.DataFrame(points, columns=["step", "v"]).groupby("step")["v"].mean()


def _groups(frame: pd.DataFrame, cells: dict[str, Cell]) -> list[tuple[tuple[Any, ...], list[Cell]]]:
    return [(key, [cells[c] for c in rows["cell_id"] if c in cells]) for key, rows in sorted_groups(frame)]


def _lines(
    axes: list[plt.Axes],
    groups: list[tuple[tuple, list[Cell]]],
    label: Callable,
    keys: list[str],
    fetch: Callable[[list[Cell], str], Any],
    log: bool,
    what: str,
) -> None:
    for ax, key in zip(axes, keys, strict=True):
        drawn = False
        for gkey, gcells in groups:
            # Diverged seeds get their own dotted line: averaging a run that stopped early with
            # runs that went on would draw a fake drop where it ends.
            ok = [c for c in gcells if not _diverged(c)]
            series = [(ok, label(gkey), "-" if gkey[3] in ("res+pre+post", BASELINE_MAPS, "?") else "--")]
            series += [
                ([c], f"{label(gkey)} {c.cell_id[-6:]} (diverged)", ":") for c in gcells if _diverged(c)
            ]
            colour = None
            for members, name, style in series:
                data = fetch(members, key) if members else None
                if data is None:
                    continue
                x = data.index if isinstance(data, pd.Series) else np.arange(len(data))
                y = np.asarray(data, dtype=float)
                if log:
                    y = np.where(y > 0, y, np.nan)
                if not np.isfinite(y).any():
                    continue
                (line,) = ax.plot(
                    x, y, marker=MARKER.get(gkey[0], "x"), ms=4, label=name, linestyle=style, color=colour
                )
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
        _layer_mean,
        True,
        "gains.json",
    )
    titles = ["composite fwd of Q_l (paper's)", "composite bwd of Q_l (paper's)",
              "prefix fwd of P_l (extra, not the paper's)"]
    for ax, title in zip(axes, titles, strict=True):
        ax.set_title(title)
        ax.set_xlabel("residual layer l (input -> output)")
        ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    axes[0].set_ylabel("Amax gain (mean over seeds)")
    return _save(fig, out / "composite_gain_per_layer.png")


def stream_spread_per_layer(frame: pd.DataFrame, cells: dict[str, Cell], out: Path) -> Path:
    """How far apart the n streams are after each layer (0 = copies of one vector)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    _lines([ax], _groups(frame, cells), labeller(frame), ["stream_spread"], _layer_mean, False, "gains.json")
    ax.set_title("stream spread ||x - mean_i x_i|| / ||x|| (final model)")
    ax.set_xlabel("residual layer (output of)")
    return _save(fig, out / "stream_spread_per_layer.png")


def _over_steps(
    frame: pd.DataFrame, cells: dict[str, Cell], path: Path, keys: list[str], log_y: bool
) -> Path:
    """One panel per ``history.json`` key against the training step, a line per cell group."""
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys) + 1, 4))
    _lines(list(axes), _groups(frame, cells), labeller(frame), keys, _step_mean, log_y, "history.json")
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
        lines: dict[tuple, list[tuple[float, float, float]]] = {}
        for key, rows in sorted_groups(frame):
            est = estimate(rows[col])
            if est.n:
                line = (key[0], 0, *key[2:])
                lines.setdefault(line, []).append((float(key[1]), est.mean, est.half or 0.0))
        for line, pts in lines.items():
            pts.sort()
            ax.errorbar(
                [p[0] for p in pts],
                [p[1] for p in pts],
                yerr=[p[2] for p in pts],
                capsize=3,
                marker=MARKER.get(line[0], "x"),
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
    ]
