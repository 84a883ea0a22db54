"""The report's figures (PNG, matplotlib Agg) as small multiples, one function per figure.

The same rules in every figure, so that a reader learns them once:

- **Panels, not piles.** One row of panels per experiment (main, depth, frontier, n_sweep,
  ablation...), each drawn from that experiment's cells only, one column per quantity; the
  frontier and the loss gap vs n get one panel per variant, the downstream scores one per task.
- **Colour and marker name the variant** (:func:`variant_style`, the one place plotting decides
  a variant's look); inside a variant, the setting the experiment varies (depth, lr, n, maps)
  gets its own shade and line style, named in the legend, which sits beside the row, outside
  the data.
- **Lines are means over completed seeds with a 95 % CI band** (t-based, two or more seeds). On a
  log axis both are taken on the log scale: the line is the geometric mean and the band the
  t-interval of log(value), back-transformed, so it stays positive and is drawn whatever its
  width (an arithmetic interval that crosses 0 cannot be). Values <= 0 cannot sit on a log axis
  and are left out there. Panels are scaled to their lines and points, not to their bands: with
  two seeds (t = 12.7) a band can be far wider than the data and then runs off the panel. Each
  diverged seed is drawn on its own, dotted.
- A figure without data is still written, saying so, so the report's links never break.

:data:`FIGURES` holds each figure's title, caption (what it shows, how to read it) and alt text.
"""

from __future__ import annotations

import hashlib
import io
import math
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.collections import PathCollection
from matplotlib.colors import to_hex, to_rgb
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from PIL import Image

from mhc_bench import variants as registry
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
from mhc_bench.report.compare import completed, in_experiment, loss_gap, present_experiments, trained
from mhc_bench.report.stats import estimate, wilson

_DPI = 100
_PANEL_W, _PANEL_H, _LEGEND_W = 3.7, 2.4, 2.5  # inches: about 1200 px for three panels and a legend
_FONT = {"font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "legend.fontsize": 7,
         "xtick.labelsize": 7, "ytick.labelsize": 7}

# A registered variant looks the same in every figure (its own label, marker and colour, from
# mhc_bench.variants); a variant without a colour, or an unknown name, gets a deterministic style from
# a stable hash of its name, in colours the built-in variants do not use.
_PALETTE = ("#1f77b4", "#8c564b", "#17becf", "#bcbd22", "#d62728", "#66a61e", "#e6ab02", "#a6761d")
_MARKERS = ("D", "v", "P", "X", "*", "h", "<", ">")
_LINESTYLES: tuple[Any, ...] = ("-", "--", "-.", (0, (6, 2)), (0, (3, 1, 1, 1, 1, 1)))  # ":" = diverged


def variant_style(name: str) -> dict[str, str]:
    """``{"color", "marker", "label"}`` of a variant: the one place plotting decides them."""
    digest = int(hashlib.sha256(str(name).encode()).hexdigest(), 16)
    hashed = {"color": _PALETTE[digest % len(_PALETTE)],
              "marker": _MARKERS[(digest // len(_PALETTE)) % len(_MARKERS)], "label": str(name)}
    if str(name) not in registry.names():
        return hashed
    spec = registry.get(str(name))
    return {"color": spec.color or hashed["color"], "marker": spec.marker, "label": spec.label}


def _shade(color: str, i: int, k: int) -> str:
    """The ``i``-th of ``k`` shades of ``color``: darker first, then lighter (k = 1: the colour)."""
    if k <= 1:
        return color
    t = -0.35 + 0.75 * i / (k - 1)
    rgb = np.array(to_rgb(color))
    mixed = rgb * (1 + t) if t < 0 else rgb + (1 - rgb) * t
    return to_hex(np.clip(mixed, 0, 1))


@dataclass(frozen=True)
class FigureText:
    """What the report prints with a figure: a title, a caption (what it shows, how to read it),
    and the alt text a screen reader speaks."""

    title: str
    caption: str
    alt: str


_BANDS = ("Lines: mean over completed seeds; shaded: 95 % CI (t-based, two or more seeds); on log axes "
          "the geometric mean and the CI of log(value), values <= 0 left out. Panels are scaled to the "
          "lines, so a band wider than the data (two seeds: t = 12.7) runs off the panel. Dotted: a "
          "diverged seed.")
FIGURES: dict[str, FigureText] = {
    "gain_vs_depth": FigureText(
        "Composite gain vs depth (depth experiment, C3)",
        "Max composite Amax gain of the suffix products Q_l (the paper's Fig. 3b quantity), forward and "
        "backward, against the number of residual layers L, log y. Dots are seeds; the dashed line is "
        "each variant's log-linear fit (its slope is the growth per layer in the growth table). HC "
        "rising along a straight line means geometric growth with depth; mHC flat at 1 is the paper's "
        "claim. " + _BANDS,
        "Two log-scale panels, forward and backward composite gain against depth L, one line per "
        "variant with seeds as dots and a dashed log-linear fit; the grey dotted line marks gain 1."),
    "stability_frontier": FigureText(
        "Stability frontier (frontier experiment, C4)",
        "Fraction of seeds that diverged at each learning rate of the sweep (no gradient clipping), one "
        "panel per variant, log x. The band is the 95 % Wilson interval of the fraction, the labels "
        "k/n count diverged of trained seeds. A variant whose line leaves 0 at a lower learning rate "
        "is less stable; with two seeds per point the interval is wide, so read the counts.",
        "One panel per variant: diverged fraction of seeds (0 to 1) against learning rate on a log "
        "axis, with a Wilson-interval band and k/n labels at each point."),
    "loss_gap_vs_n": FigureText(
        "Loss gap vs n (n_sweep experiment, C7)",
        "Final validation loss minus the baseline's at the same scale (paired by seed), against the "
        "expansion rate n (log2 x), one panel per variant on one y range; below the dotted 0 line the "
        "variant beats the baseline. Error bars: 95 % CI over seeds (t-based; paired when both sides "
        "share seeds); an interval that spans 0 cannot tell the variant from the baseline. Black "
        "crosses: the mHC gaps a secondary source reports.",
        "One panel per variant: loss gap to the baseline against n with 95 % CI error bars, a dotted "
        "zero line and black crosses for the reported mHC gaps."),
    "accuracy_by_n": FigureText(
        "Downstream scores (lm-eval)",
        "One panel per task and metric: score against n (the baseline sits at n = 1), mean ± 95 % CI "
        "over seeds as error bars, variants side by side; dashed grey is chance where the task has "
        "one. Scores inside the chance band say nothing about the variants.",
        "A grid of small panels, one per lm-eval task metric, each with the variants' scores against n "
        "as points with error bars and a dashed chance line where defined."),
    "composite_gain_per_layer": FigureText(
        "Composite gain per layer (final models)",
        "Per experiment (rows): the composite Amax gain of Q_l (layer l to the top, forward and "
        "backward, the paper's Fig. 3b/7b curves) and the prefix gain of P_l (input to layer l, an "
        "extra, not the paper's) against the residual layer l, log y. HC's curves far above 1 where "
        "mHC's stay at 1 is the claim; the frontier row shows what no clipping at high learning "
        "rates does. " + _BANDS,
        "A grid with one row per experiment and three log-scale panels per row (composite forward, "
        "composite backward, prefix forward gain against residual layer), lines coloured by variant."),
    "stream_spread_per_layer": FigureText(
        "Stream spread per layer (final models)",
        "How far apart the n residual streams are after each layer, ||x - mean_i x_i|| / ||x|| "
        "(0: the streams are copies of one vector, the model is the baseline in disguise), one panel "
        "per experiment. " + _BANDS,
        "One panel per experiment: relative spread of the residual streams against residual layer, "
        "one line per variant and setting."),
    "gain_over_steps": FigureText(
        "Gains during training",
        "Per experiment (rows): the max composite forward and backward gain and the first layer's "
        "single forward gain at each probe step, log y. A line climbing by orders of magnitude is a "
        "blow-up in the making (the frontier row); mHC's flat at 1. " + _BANDS,
        "A grid with one row per experiment and three log-scale panels per row (max composite forward "
        "gain, max composite backward gain, layer-0 forward gain against training step)."),
    "loss_curves": FigureText(
        "Loss curves",
        "Per experiment (rows): training loss (logged every few steps) and validation loss (at each "
        "evaluation) against the step. Lines of one colour are one variant at the experiment's "
        "settings (shade and style, see the legend). " + _BANDS,
        "A grid with one row per experiment and two panels per row, training and validation loss "
        "against step, lines coloured by variant."),
    "grad_norm": FigureText(
        "Gradient norms",
        "Per experiment (rows): the global gradient norm and the norm of the residual maps' gradients "
        "(zero for the baseline, which has none: not drawn on the log axis) against the step, log y. "
        "Spikes here precede divergence. " + _BANDS,
        "A grid with one row per experiment and two log-scale panels per row, total and maps gradient "
        "norm against training step, lines coloured by variant."),
}


def labeller(frame: pd.DataFrame) -> Callable[[GroupKey], str]:
    """Label a group by the key parts that vary across ``frame`` (the variant always shown; the setting
    hash never: the readable parts, knobs included, already tell the groups apart)."""
    varying = [c for c in GROUP_KEY if c == "variant" or (
        c != "setting" and c in frame and frame[c].astype(str).nunique() > 1)]
    names = {"lr": "lr", "grad_clip": "clip", "mix_weight": "mix"}

    def label(key: GroupKey) -> str:
        parts = []
        for col, val in zip(GROUP_KEY, key, strict=True):
            if col not in varying or (col == "maps" and val == BASELINE_MAPS):
                continue
            if col == "variant":
                parts.append(variant_style(val)["label"])
            elif col == "n":
                parts.append(f"n={'?' if pd.isna(val) else int(val)}")
            elif col in names:
                parts.append(f"{names[col]}={fmt_float(val)}")
            else:
                parts.append(str(val))
        return " ".join(parts)

    return label


def _figure(nrows: int, ncols: int, legend: bool = True, panel: tuple[float, float] = (_PANEL_W, _PANEL_H),
            wrap: int = 1) -> tuple[plt.Figure, list[list[plt.Axes]], list[Any]]:
    """``nrows`` rows of ``ncols`` panels (``panel``: width, height in inches), each row with, if
    ``legend``, a narrow column of its own holding its legend (outside the data); ``wrap`` rows sit
    side by side. Returns the figure, the panels by row, and the legend axes by row."""
    group = [panel[0]] * ncols + ([_LEGEND_W] if legend else [])
    ratios = group * wrap
    with plt.rc_context(_FONT):
        fig = plt.figure(figsize=(sum(ratios), math.ceil(nrows / wrap) * panel[1]), layout="constrained")
        grid = fig.add_gridspec(math.ceil(nrows / wrap), len(ratios), width_ratios=ratios)
        panels, keys = [], []
        for r in range(nrows):
            at, offset = r // wrap, (r % wrap) * len(group)
            panels.append([fig.add_subplot(grid[at, offset + c]) for c in range(ncols)])
            if legend:
                ax = fig.add_subplot(grid[at, offset + ncols])
                ax.axis("off")
                keys.append(ax)
    return fig, panels, keys


def _legend(ax: plt.Axes, sources: Sequence[plt.Axes], extra: Sequence[tuple[Any, str]] = ()) -> None:
    """The legend of ``sources``' labelled artists (duplicates once), drawn into ``ax``."""
    seen: dict[str, Any] = {}
    for src in sources:
        for handle, label in zip(*src.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    for handle, label in extra:
        seen.setdefault(label, handle)
    if seen:
        ax.legend(list(seen.values()), list(seen), loc="upper left", frameon=False, borderaxespad=0,
                  fontsize=7, handlelength=2.6)


def _save(fig: plt.Figure, path: Path) -> Path:
    """The figure as a 256-colour PNG: a third of the bytes of matplotlib's (the HTML report embeds
    every figure), no visible change for line plots; no timestamp or software tag, so the same
    figure gives the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = io.BytesIO()
    with plt.rc_context(_FONT):
        fig.savefig(raw, format="png", dpi=_DPI, metadata={"Software": None})
    plt.close(fig)
    image = Image.open(raw).convert("RGB")
    image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    return path


def _empty(ax: plt.Axes, what: str) -> None:
    text = textwrap.fill(f"no {what} in the results", 36)
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#555555")
    ax.set_xticks([])
    ax.set_yticks([])


def _nothing(path: Path, what: str) -> Path:
    fig, panels, _ = _figure(1, 1, legend=False)
    _empty(panels[0][0], what)
    return _save(fig, path)


def _finite(values: Sequence[Any]) -> list[float]:
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out.append(f)
    return out


def _diverged(cell: Cell) -> bool:
    return (cell.metrics or {}).get("status") == "diverged"


@dataclass(frozen=True)
class Band:
    """A mean curve over seeds with its 95 % CI (``low``/``high`` NaN where fewer than 2 seeds)."""

    x: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray


def band(x: Sequence[float], columns: Sequence[Sequence[Any]], log: bool) -> Band | None:
    """``columns[i]``: the seeds' values at ``x[i]``. Linear: arithmetic mean and t-based 95 % CI.
    Log: geometric mean and the t-based CI of log(value), back-transformed (values <= 0 dropped),
    so the band is positive and drawable on a log axis however wide it is."""
    cols = [_finite(c) for c in columns]
    if log:
        cols = [[math.log(v) for v in c if v > 0] for c in cols]
    ests = [estimate(c) for c in cols]
    if not any(e.n for e in ests):
        return None
    mean = np.array([e.mean for e in ests], dtype=float)
    half = np.array([np.nan if e.half is None else e.half for e in ests], dtype=float)
    low, high = mean - half, mean + half
    if log:
        mean, low, high = np.exp(mean), np.exp(low), np.exp(high)
    return Band(np.asarray(x, dtype=float), mean, low, high)


def _draw(ax: plt.Axes, b: Band, alpha: float = 0.15, **style: Any) -> Any:
    """The mean line and, where two or more seeds exist, its 95 % CI as a shaded band."""
    if not np.isfinite(b.mean).any():
        return None
    (line,) = ax.plot(b.x, b.mean, ms=3, lw=1.3, **style)
    if np.isfinite(b.low).any():
        ax.fill_between(b.x, b.low, b.high, color=line.get_color(), alpha=alpha, linewidth=0)
    return line


def _layer_values(cells: list[Cell], key: str) -> tuple[list[int], list[list[Any]]]:
    series = [c.gains[key] for c in cells if c.gains and isinstance(c.gains.get(key), list)]
    width = max((len(s) for s in series), default=0)
    return list(range(width)), [[s[i] for s in series if i < len(s)] for i in range(width)]


# metrics.json's value at the last step, where history.json may not reach it (validation runs
# every few hundred steps; the final one is in metrics.json).
_FINAL = {"val_loss": "final_val_loss"}


def _step_values(cells: list[Cell], key: str) -> tuple[list[int], list[list[Any]]]:
    points: dict[int, list[Any]] = {}
    for c in cells:
        seen = set()
        for r in c.history:
            s, v = r.get("step"), r.get(key)
            if s is not None and v is not None:
                points.setdefault(int(s), []).append(v)
                seen.add(int(s))
        metrics = c.metrics or {}
        last, final = metrics.get("steps_done"), metrics.get(_FINAL.get(key, ""))
        if last is not None and final is not None and int(last) not in seen:
            points.setdefault(int(last), []).append(final)
    steps = sorted(points)
    return steps, [points[s] for s in steps]


@dataclass(frozen=True)
class _Line:
    """One group of cells drawn as one line (its diverged seeds dotted beside it)."""

    variant: str
    label: str
    color: str
    marker: str
    linestyle: Any
    cells: list[Cell]
    seeds: dict[str, Any]


def _ordered(names: Sequence[Any]) -> list[str]:
    return sorted({str(v) for v in names}, key=lambda v: (variant_order(v), v))


def _lines(rows: pd.DataFrame, cells: dict[str, Cell]) -> list[_Line]:
    """The groups of ``rows`` as lines: colour and marker from the variant, shade and line style
    from the group's place among that variant's groups."""
    label = labeller(rows)
    seeds = dict(zip(rows["cell_id"], rows["seed"], strict=True)) if "seed" in rows else {}
    groups = [(key, [cells[c] for c in g["cell_id"] if c in cells]) for key, g in sorted_groups(rows)]
    out = []
    for variant in _ordered([k.variant for k, _ in groups]):
        mine = [(k, m) for k, m in groups if str(k.variant) == variant]
        style = variant_style(variant)
        for i, (key, members) in enumerate(mine):
            out.append(_Line(variant, label(key), _shade(style["color"], i, len(mine)), style["marker"],
                             _LINESTYLES[i % len(_LINESTYLES)], members, seeds))
    return out


@dataclass(frozen=True)
class _Row:
    """One row of panels: an experiment (or one variant of it) and the lines it draws."""

    experiment: str
    title: str
    lines: list[_Line]


def _rows(frame: pd.DataFrame, cells: dict[str, Cell]) -> list[_Row]:
    """A row per experiment where each variant is one line (main); where an experiment varies a
    setting (depth, lr, n, maps), a row per variant with its settings, and a variant with a single
    group there (the reference, e.g. the baseline of n_sweep) drawn in every row instead."""
    out = []
    for experiment in present_experiments(frame):
        rows = trained(in_experiment(frame, experiment))
        if rows.empty:
            continue
        lines = _lines(rows, cells)
        variants = _ordered([ln.variant for ln in lines])
        per = {v: [ln for ln in lines if ln.variant == v] for v in variants}
        if all(len(per[v]) == 1 for v in variants):
            out.append(_Row(experiment, experiment, lines))
            continue
        reference = [per[v][0] for v in variants if len(per[v]) == 1]
        for v in variants:
            if len(per[v]) > 1:
                title = f"{experiment} · {variant_style(v)['label']}"
                out.append(_Row(experiment, title, reference + per[v]))
    return out


def _plot_line(ax: plt.Axes, line: _Line, values: Callable[[list[Cell]], tuple[list[int], list[list[Any]]]],
               log: bool, alpha: float = 0.15) -> bool:
    """Draw ``line``'s mean and band, then each diverged seed dotted; True if anything was drawn."""
    # A diverged seed is not averaged in: a run that stopped early would draw a fake drop where it ends.
    ok = [c for c in line.cells if not _diverged(c)]
    drawn = False
    if ok and (b := band(*values(ok), log)) is not None:
        drawn |= _draw(ax, b, alpha, color=line.color, marker=line.marker, linestyle=line.linestyle,
                       label=line.label) is not None
    for c in line.cells:
        if _diverged(c) and (b := band(*values([c]), log)) is not None:
            seed = line.seeds.get(c.cell_id, "?")
            seed = int(seed) if isinstance(seed, float) and math.isfinite(seed) else seed
            drawn |= _draw(ax, b, color=line.color, marker=line.marker, linestyle=":",
                           label=f"{line.label} seed {seed} (diverged)") is not None
    return drawn


def _data_limits(ax: plt.Axes, log: bool) -> tuple[float, float] | None:
    """The y range of the panel's lines and points (means, seeds, references), with a margin."""
    parts = [np.asarray(ln.get_ydata(), dtype=float) for ln in ax.lines]
    parts += [np.asarray(c.get_offsets(), dtype=float).reshape(-1, 2)[:, 1] for c in ax.collections
              if isinstance(c, PathCollection)]
    ys = np.concatenate(parts or [np.array([])])
    ys = ys[np.isfinite(ys) & ((ys > 0) if log else True)]
    if ys.size == 0:
        return None
    low, high = float(ys.min()), float(ys.max())
    if log:
        return low / 1.6, high * 1.6
    pad = 0.08 * (high - low) or 0.05 * max(abs(high), 1e-12)
    return low - pad, high + pad


def _fit_y(axes: list[plt.Axes], log: bool) -> None:
    """Scale panels to their lines, not their bands, one range for panels that compare the same
    quantity (the variants' rows of an experiment): a CI band wider than the data (two seeds give
    t = 12.7) runs off the panel instead of squashing every line into a sliver."""
    limits = [lim for ax in axes if (lim := _data_limits(ax, log)) is not None]
    if not limits:
        return
    low, high = min(lo for lo, _ in limits), max(hi for _, hi in limits)
    for ax in axes:
        if ax.lines:
            ax.set_ylim(low, high)


def _experiment_grid(frame: pd.DataFrame, cells: dict[str, Cell], path: Path, keys: dict[str, str],
                     values: Callable[[list[Cell], str], tuple[list[int], list[list[Any]]]], log: bool,
                     xlabel: str, source: str, unity: bool = False) -> Path:
    """Rows: experiments (or their variants, see :func:`_rows`); columns: ``keys`` (name -> panel
    title); a legend beside each row; the rows of one experiment share each column's y range."""
    rows = _rows(frame, cells)
    if not rows:
        return _nothing(path, source)
    wrap = 2 if len(keys) == 1 and len(rows) > 3 else 1  # one quantity: two rows side by side
    fig, panels, legends = _figure(len(rows), len(keys), wrap=wrap)
    with plt.rc_context(_FONT):
        for row, axes, key_ax in zip(rows, panels, legends, strict=True):
            for ax, (key, title) in zip(axes, keys.items(), strict=True):
                drawn = False
                alpha = max(0.05, 0.3 / (len(row.lines) + 1))  # overlapping bands stay see-through
                for line in row.lines:
                    drawn |= _plot_line(ax, line, lambda cs, k=key: values(cs, k), log, alpha)
                ax.set_title(f"{row.title}: {title}", loc="left")
                ax.set_xlabel(xlabel)
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                if not drawn:
                    _empty(ax, f"{key} ({source})" + (" above 0 (log axis)" if log else ""))
                    continue
                if log:
                    ax.set_yscale("log")
                if unity:
                    ax.axhline(1.0, color="grey", lw=0.8, ls=":")
                ax.grid(alpha=0.3)
            _legend(key_ax, axes)
        for experiment in {r.experiment for r in rows}:
            mine = [axes for r, axes in zip(rows, panels, strict=True) if r.experiment == experiment]
            for column in range(len(keys)):
                _fit_y([axes[column] for axes in mine], log)
    return _save(fig, path)


def composite_gain_per_layer(frame: pd.DataFrame, cells: dict[str, Cell], out: Path) -> Path:
    """Fig. 3b / 7b analogue per experiment: composite Amax gain of Q_l (layer l to the top), log y;
    the prefix gain of P_l (input to layer l), an extra that is not the paper's curve, beside it."""
    keys = {"composite_fwd": "composite fwd of Q_l", "composite_bwd": "composite bwd of Q_l",
            "prefix_fwd": "prefix fwd of P_l (extra)"}
    return _experiment_grid(frame, cells, out / "composite_gain_per_layer.png", keys, _layer_values, True,
                            "residual layer l (input -> output)", "gains.json", unity=True)


def stream_spread_per_layer(frame: pd.DataFrame, cells: dict[str, Cell], out: Path) -> Path:
    """How far apart the n streams are after each layer (0 = copies of one vector)."""
    return _experiment_grid(frame, cells, out / "stream_spread_per_layer.png",
                            {"stream_spread": "stream spread (final model)"}, _layer_values, False,
                            "residual layer (output of)", "gains.json")


def gain_over_steps(frame: pd.DataFrame, cells: dict[str, Cell], out: Path) -> Path:
    keys = {"max_composite_fwd": "max composite fwd", "max_composite_bwd": "max composite bwd",
            "layer0_fwd": "layer-0 single fwd"}
    return _experiment_grid(frame, cells, out / "gain_over_steps.png", keys, _step_values, True, "step",
                            "history.json", unity=True)


def loss_curves(frame: pd.DataFrame, cells: dict[str, Cell], out: Path) -> Path:
    return _experiment_grid(frame, cells, out / "loss_curves.png",
                            {"train_loss": "train loss", "val_loss": "val loss"}, _step_values, False, "step",
                            "history.json")


def grad_norm(frame: pd.DataFrame, cells: dict[str, Cell], out: Path) -> Path:
    return _experiment_grid(frame, cells, out / "grad_norm.png",
                            {"grad_norm": "grad norm", "grad_norm_maps": "grad norm of the maps"},
                            _step_values, True, "step", "history.json")


def accuracy_by_n(frame: pd.DataFrame, out: Path, ncols: int = 3) -> Path:
    """Score vs n per task (baseline at n = 1), mean ± 95 % CI over seeds, chance dashed; the
    panels wrap into rows of ``ncols`` and share one legend."""
    path = out / "accuracy_by_n.png"
    tasks = eval_tasks(frame)
    if not tasks:
        return _nothing(path, "eval scores")
    ncols = min(ncols, len(tasks))
    nrows = math.ceil(len(tasks) / ncols)
    fig, panels, legends = _figure(nrows, ncols, panel=(3.3, 2.5))
    scored = frame[frame[[f"eval.{t}" for t in tasks if f"eval.{t}" in frame]].notna().any(axis=1)]
    label = labeller(scored.assign(n=0))  # n is the x axis, not part of the line label
    flat = [ax for row in panels for ax in row]
    chance_handle = Line2D([], [], color="grey", ls="--", lw=1)
    with plt.rc_context(_FONT):
        for ax, task in zip(flat, tasks, strict=False):
            col = f"eval.{task}"
            lines: dict[GroupKey, list[tuple[float, float, float]]] = {}
            for key, rows in sorted_groups(frame):
                est = estimate(rows[col]) if col in rows else estimate([])
                if est.n:
                    point = (float(key.n), est.mean, est.half or 0.0)
                    lines.setdefault(key._replace(n=0, setting=""), []).append(point)
            variants = _ordered([k.variant for k in lines])
            ordered = sorted(lines.items(), key=lambda kv: variants.index(str(kv[0].variant)))
            at_n: dict[float, list[GroupKey]] = {}
            for line, pts in ordered:
                for p in pts:
                    at_n.setdefault(p[0], []).append(line)
            for line, pts in ordered:
                pts.sort()
                style = variant_style(line.variant)
                # Side by side where several lines share an n, centred on it.
                xs = [p[0] + 0.12 * (at_n[p[0]].index(line) - (len(at_n[p[0]]) - 1) / 2) for p in pts]
                ax.errorbar(xs, [p[1] for p in pts], yerr=[p[2] for p in pts], capsize=2,
                            marker=style["marker"], color=style["color"], ms=4, lw=1, label=label(line))
            chance = frame[f"{col}.chance"].dropna() if f"{col}.chance" in frame else pd.Series(dtype=float)
            if not chance.empty:
                ax.axhline(float(chance.iloc[0]), color="grey", ls="--", lw=1)
            ax.set_title(task, loc="left", fontsize=8)
            ax.set_xlabel("n (streams)")
            if ax in [row[0] for row in panels]:
                ax.set_ylabel("score (mean, 95 % CI)")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        for ax in flat[len(tasks):]:
            ax.axis("off")
        _legend(legends[0], flat, [(chance_handle, "chance")])
        for ax in legends[1:]:
            ax.axis("off")
    return _save(fig, path)


def _depth_band(rows: pd.DataFrame, direction: str) -> tuple[Band | None, pd.DataFrame]:
    done = completed(rows)
    depth, gain = dep.layers(done), dep.composite_gain(done, direction)
    xs = sorted({int(v) for v in depth.dropna()})
    return band(xs, [list(gain[depth == x]) for x in xs], log=True), done


def gain_vs_depth(frame: pd.DataFrame, out: Path) -> Path:
    """Max composite gain against residual layers L (log y): geometric mean and log-scale 95 % CI
    band over seeds per variant, seeds as dots, each variant's log-linear fit dashed (depth
    experiment only)."""
    path = out / "gain_vs_depth.png"
    rows = trained(in_experiment(frame, "depth"))
    if rows.empty:
        return _nothing(path, "depth experiment")
    fig, panels, legends = _figure(1, 2, panel=(4.2, 3.4))
    axes = panels[0]
    series_list = dep.settings(rows)
    with plt.rc_context(_FONT):
        for ax, direction in zip(axes, ("fwd", "bwd"), strict=True):
            for label, series in series_list:
                for variant in _ordered(series["variant"].dropna()):
                    mine = series[series["variant"] == variant]
                    style = variant_style(variant)
                    b, done = _depth_band(mine, direction)
                    if b is None:
                        continue
                    name = style["label"] if len(series_list) == 1 else f"{style['label']} {label}"
                    line = _draw(ax, b, color=style["color"], marker=style["marker"],
                                 label=f"{name} (mean, 95 % CI)")
                    if line is None:
                        continue
                    ax.scatter(dep.layers(done), dep.composite_gain(done, direction), s=10, alpha=0.5,
                               color=style["color"], label=f"{name} seeds")
                    fit = dep.fit_growth(mine, direction)
                    if fit is not None:
                        xs = np.linspace(min(fit.depths), max(fit.depths), 50)
                        ax.plot(xs, np.exp(fit.intercept + fit.slope * xs), ls="--", lw=1,
                                color=style["color"],
                                label=f"{name} fit ({direction}): x{fit.factor:.3f}/layer")
            ax.set_yscale("log")
            _fit_y([ax], log=True)
            ax.set_title(f"max composite {direction} gain vs depth", loc="left")
            ax.set_xlabel("L = residual layers (2 x blocks)")
            ax.axhline(1.0, color="grey", lw=0.8, ls=":")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("Amax gain (log)")
        _legend(legends[0], axes)
    return _save(fig, path)


def stability_frontier(frame: pd.DataFrame, out: Path) -> Path:
    """Diverged fraction of seeds vs learning rate (frontier experiment): one panel per variant
    (a row per scale), the 95 % Wilson interval of each fraction as a band, k/n at each point."""
    path = out / "stability_frontier.png"
    rows = trained(in_experiment(frame, "frontier"))
    if rows.empty:
        return _nothing(path, "frontier experiment")
    series_list = fr.settings(rows)
    variants = _ordered(rows["variant"].dropna())
    fig, panels, legends = _figure(len(series_list), len(variants), panel=(3.5, 3.0))
    with plt.rc_context(_FONT):
        for (scale, series), axes, key_ax in zip(series_list, panels, legends, strict=True):
            for ax, variant in zip(axes, variants, strict=True):
                style = variant_style(variant)
                by_n = fr.variant_rows(series, variant)
                for i, (n, cells) in enumerate(by_n):
                    points = fr.lr_points(cells, {}, {})
                    if not points:
                        continue
                    color = _shade(style["color"], i, len(by_n))
                    x = np.array([p.lr for p in points])
                    ci = [wilson(p.diverged, p.cells) for p in points]
                    ax.plot(x, [p.fraction for p in points], marker=style["marker"], color=color, ms=4,
                            linestyle=_LINESTYLES[i % len(_LINESTYLES)], label=f"{style['label']} n={n}")
                    ax.fill_between(x, [c[0] for c in ci], [c[1] for c in ci], color=color, alpha=0.15,
                                    linewidth=0)
                    for p in points:
                        ax.annotate(p.seeds_text(), (p.lr, p.fraction), fontsize=7, color=color,
                                    textcoords="offset points", xytext=(3, 4))
                if not by_n:
                    _empty(ax, f"{variant} cells")
                ax.set_xscale("log")
                ax.set_ylim(-0.05, 1.1)
                ax.set_title(f"{style['label']} ({scale})", loc="left")
                ax.set_xlabel("learning rate (no clipping)")
                ax.grid(alpha=0.3)
            axes[0].set_ylabel("diverged fraction of seeds")
            band_handle = plt.Rectangle((0, 0), 1, 1, color="grey", alpha=0.2)
            _legend(key_ax, axes, [(band_handle, "95 % Wilson interval")])
    return _save(fig, path)


def loss_gap_vs_n(frame: pd.DataFrame, out: Path) -> Path:
    """Loss gap to the baseline vs n (n_sweep experiment), one panel per variant (one y range): mean
    and 95 % CI as error bars; the reported mHC gaps as crosses in every panel."""
    path = out / "loss_gap_vs_n.png"
    rows = in_experiment(frame, "n_sweep")
    if trained(rows).empty:
        return _nothing(path, "n_sweep experiment")
    label = labeller(rows.assign(n=0))
    lines: dict[GroupKey, list[tuple[float, Any]]] = {}
    for key, group in sorted_groups(rows):
        if key.maps == BASELINE_MAPS or pd.isna(key.n):  # the baseline is the reference, not a line
            continue
        gap = loss_gap(frame, group, key)
        if gap.n:
            lines.setdefault(key._replace(n=0, setting=""), []).append((float(key.n), gap))
    variants = _ordered([k.variant for k in lines])
    if not variants:
        return _nothing(path, "loss gaps (n_sweep experiment)")
    fig, panels, legends = _figure(1, len(variants), panel=(3.8, 3.0))
    axes = panels[0]
    ns = sorted({int(n) for pts in lines.values() for n, _ in pts} | set(paper.N_GAPS))
    with plt.rc_context(_FONT):
        for ax, variant in zip(axes, variants, strict=True):
            style = variant_style(variant)
            mine = [(k, pts) for k, pts in lines.items() if str(k.variant) == variant]
            for i, (key, pts) in enumerate(mine):
                pts.sort(key=lambda p: p[0])
                # Error bars, not a band: few points whose intervals (two seeds) are the message.
                half = [0.0 if p[1].half is None else p[1].half for p in pts]
                ax.errorbar([p[0] for p in pts], [p[1].mean for p in pts], yerr=half, capsize=3, ms=4,
                            lw=1.2, color=_shade(style["color"], i, len(mine)), marker=style["marker"],
                            linestyle=_LINESTYLES[i % len(_LINESTYLES)],
                            label=f"{label(key)} (mean, 95 % CI)")
            ax.scatter(list(paper.N_GAPS), list(paper.N_GAPS.values()), marker="x", color="black",
                       label="paper mHC gaps (reported)")
            ax.axhline(0.0, color="grey", lw=0.8, ls=":")
            ax.set_xscale("log", base=2)
            ax.set_xticks(ns, [str(n) for n in ns])
            ax.minorticks_off()
            ax.set_xlabel("n (streams)")
            ax.set_title(style["label"], loc="left")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("val loss - baseline's")
        lows, highs = zip(*(ax.get_ylim() for ax in axes), strict=True)
        for ax in axes:
            ax.set_ylim(min(lows), max(highs))
        _legend(legends[0], axes)
    return _save(fig, path)


def make_plots(frame: pd.DataFrame, cells: list[Cell], out: Path) -> list[Path]:
    """Every figure, into ``out`` (the report's ``plots/`` folder), in the report's order: the
    experiments' figures (as the claims they settle), then the per-cell curves."""
    by_id = {c.cell_id: c for c in cells}
    return [
        gain_vs_depth(frame, out),
        stability_frontier(frame, out),
        loss_gap_vs_n(frame, out),
        accuracy_by_n(frame, out),
        composite_gain_per_layer(frame, by_id, out),
        stream_spread_per_layer(frame, by_id, out),
        gain_over_steps(frame, by_id, out),
        loss_curves(frame, by_id, out),
        grad_norm(frame, by_id, out),
    ]
