"""Gain plots of one cell (log y: HC gains span orders of magnitude, mHC sits at 1)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def _finite_or_nan(values: list[Any]) -> list[float]:
    """Values to plot: None, inf and NaN (a diverged model's probes) become gaps, never axis limits."""
    return [float(v) if v is not None and math.isfinite(v) else math.nan for v in values]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# The paper's composite gains are of the suffix product Q_l; the prefix gain is an extra.
PER_LAYER_CURVES = (
    ("composite_fwd", "-o", "composite fwd (Q_l)"), ("composite_bwd", "-s", "composite bwd (Q_l)"),
    ("single_fwd", ":", "single fwd"), ("single_bwd", ":", "single bwd"),
    ("prefix_fwd", "--", "prefix fwd (P_l, extra)"),
)


def plot_gains_per_layer(gains: dict[str, Any], title: str, path: Path) -> Path:
    """Single-layer, composite (paper's) and prefix Amax gains per residual layer, plus stream spread."""
    plt = _pyplot()
    fig, (ax, spread_ax) = plt.subplots(2, 1, figsize=(6, 5), sharex=True, height_ratios=(3, 1.3))
    for key, style, label in PER_LAYER_CURVES:
        values = _finite_or_nan(gains.get(key) or [])
        ax.plot(range(len(values)), values, style, label=label, markersize=3)
    spread = _finite_or_nan(gains.get("stream_spread") or [])
    spread_ax.plot(range(len(spread)), spread, "-o", markersize=3, color="tab:green")
    top = max([s for s in spread if not math.isnan(s)] + [0.05])
    spread_ax.set(ylabel="stream spread", ylim=(0, top * 1.1))
    spread_ax.set_xlabel("residual layer (output of)")
    return _finish(plt, fig, ax, "", title, path)


def plot_gains_over_steps(history: list[dict[str, Any]], title: str, path: Path) -> Path:
    """Max composite gains and the layer-0 canary over training steps."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    probes = [h for h in history if "max_composite_fwd" in h]
    steps = [h["step"] for h in probes]
    for key in ("max_composite_fwd", "max_composite_bwd", "layer0_fwd", "layer0_bwd"):
        ax.plot(steps, _finite_or_nan([h[key] for h in probes]), label=key)
    return _finish(plt, fig, ax, "step", title, path)


def _finish(plt: Any, fig: Any, ax: Any, xlabel: str, title: str, path: Path) -> Path:
    """Shared look of the gain plots: log y, the ideal gain 1 as a grey line, saved and closed."""
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set(yscale="log", xlabel=xlabel, ylabel="Amax gain magnitude", title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
