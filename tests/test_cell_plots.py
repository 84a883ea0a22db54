"""A diverged cell's probes (NaN, inf, None) still give its plots: divergence is a result, not a crash."""

from __future__ import annotations

import math

from mhc_bench.train.plots import plot_gains_over_steps, plot_gains_per_layer


def test_gain_plots_of_a_diverged_cell_are_written(tmp_path) -> None:
    gains = {"composite_fwd": [1.0, math.inf, math.nan], "composite_bwd": [1.0, None, 2.0],
             "single_fwd": [1.0, 1.5, 2.0], "stream_spread": [0.01, math.nan, math.inf]}
    out = plot_gains_per_layer(gains, "diverged", tmp_path / "per_layer.png")
    assert out.stat().st_size > 0
    history = [{"step": 0, "max_composite_fwd": 1.0, "max_composite_bwd": 1.0, "layer0_fwd": 1.0,
                "layer0_bwd": 1.0},
               {"step": 10, "max_composite_fwd": math.inf, "max_composite_bwd": None,
                "layer0_fwd": math.nan, "layer0_bwd": 1.0}]
    assert plot_gains_over_steps(history, "diverged", tmp_path / "steps.png").stat().st_size > 0


def test_all_nan_spread_keeps_a_sane_axis(tmp_path) -> None:
    gains = {"stream_spread": [math.nan, math.nan]}
    assert plot_gains_per_layer(gains, "all nan", tmp_path / "p.png").stat().st_size > 0
