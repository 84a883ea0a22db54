"""Gain plots of one cell (log y: HC gains span orders of magnitude, mHC sits at 1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_gains_per_layer(gains: dict[str, Any], title: str, path: Path) -> Path:
    """Single-layer and composite Amax gain per residual layer (final model)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key, style in (("composite_fwd", "-o"), ("composite_bwd", "-s"), ("single_fwd", ":"),
                       ("single_bwd", ":")):
        values = gains.get(key) or []
        ax.plot(range(len(values)), values, style, label=key, markersize=3)
    return _finish(plt, fig, ax, "residual layer", title, path)


def plot_gains_over_steps(history: list[dict[str, Any]], title: str, path: Path) -> Path:
    """Max composite gains and the layer-0 canary over training steps."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    probes = [h for h in history if "max_composite_fwd" in h]
    steps = [h["step"] for h in probes]
    for key in ("max_composite_fwd", "max_composite_bwd", "layer0_fwd", "layer0_bwd"):
        ax.plot(steps, [h[key] if h[key] is not None else float("nan") for h in probes], label=key)
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
