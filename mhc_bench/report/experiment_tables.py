"""Tables of the experiments that settle C3, C4, C7 and C9: gain vs depth with its fitted growth,
the stability frontier, the loss gap vs n, and the performance model's predicted overhead.

Each table is built from its experiment's cells only (``compare.in_experiment``) with the same
computations the rules judge with (``depth``, ``frontier``, ``compare``), and says so when the
profile runs no such experiment. Formatting only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd

from mhc_bench.report import depth as dep
from mhc_bench.report import frontier as fr
from mhc_bench.report import paper
from mhc_bench.report.aggregate import sorted_groups, variant_order
from mhc_bench.report.compare import in_experiment, is_reference, loss_gap, trained
from mhc_bench.report.perf_model import LABEL, PerfModel
from mhc_bench.report.stats import fmt_estimate, fmt_num
from mhc_bench.report.tables import Table, diverged_text, group_cols


def _variants(rows: pd.DataFrame) -> list[str]:
    return sorted({str(v) for v in rows["variant"].dropna()}, key=lambda v: (variant_order(v), v))


def _none(title: str, experiment: str) -> Table:
    return Table(title, pd.DataFrame(), [f"this profile runs no {experiment} experiment"])


def gain_vs_depth_table(frame: pd.DataFrame) -> Table:
    """Max composite gain (fwd, bwd) per variant and depth: mean ± 95 % CI over completed seeds."""
    title = "Gain vs depth (depth experiment)"
    rows = trained(in_experiment(frame, "depth"))
    if rows.empty:
        return _none(title, "depth")
    out = []
    for label, series in dep.settings(rows):
        for variant in _variants(series):
            mine = series[series["variant"] == variant]
            fwd, bwd = dep.depth_points(mine, "fwd"), dep.depth_points(mine, "bwd")
            for pf, pb in zip(fwd, bwd, strict=True):
                out.append({
                    "setting": label,
                    "variant": variant,
                    "L (residual layers)": pf.layers,
                    "blocks": pf.blocks,
                    "cells": pf.cells,
                    "diverged": f"{pf.diverged}/{pf.cells}",
                    "max composite fwd": fmt_estimate(pf.gain),
                    "max composite bwd": fmt_estimate(pb.gain),
                })
    notes = ["mean ± 95 % CI over completed seeds (diverged cells counted, not averaged: their final gain "
             "is not a trained model's). L = residual layers = 2 x transformer blocks, the paper's L. "
             "The paper's HC peak is ~3000 at 27B (Fig. 3b); the reproduction saw 9.2 at 10M parameters."]
    return Table(title, pd.DataFrame(out), notes)


# A fitted growth this close to 1 per layer is flat for any depth the paper trains (the C3 rule's
# threshold for "flat"); extrapolating it to the paper's peak would print an absurd depth.
FLAT_GROWTH = 1e-3


def reach_text(fit: dep.GrowthFit, target: float) -> str:
    """Where the fitted line reaches ``target``, or why it never does: no growth (slope <= 0), or a
    flat fit (growth within FLAT_GROWTH of 1, or a 95 % CI that includes growth <= 1)."""
    reach = fit.reaches(target)
    if reach is None:
        return "never (no growth)"
    if abs(fit.factor - 1) <= FLAT_GROWTH or (fit.half is not None and fit.factor_low <= 1):
        return "never (flat fit)"
    return f"~{reach:.0f}"


def _fit_cells(fit: dep.GrowthFit | None, target: float) -> dict[str, str]:
    if fit is None:
        return {"growth per layer": "— (fewer than two depths)", "95 % CI": "—", "points": "—",
                f"L reaching {target:g} (extrapolation)": "—"}
    return {
        "growth per layer": f"x{fit.factor:.4f}",
        "95 % CI": "— (no CI)" if fit.half is None else f"[{fit.factor_low:.4f}, {fit.factor_high:.4f}]",
        "points": f"{fit.points} (L {'/'.join(map(str, fit.depths))})",
        f"L reaching {target:g} (extrapolation)": reach_text(fit, target),
    }


def growth_fit_table(frame: pd.DataFrame, target: float = paper.HC_PEAK) -> Table:
    """Per variant: log-linear fit of the max composite gain against L (fwd, bwd and their max)."""
    title = "Gain growth per residual layer (depth experiment, log-linear fit)"
    rows = trained(in_experiment(frame, "depth"))
    if rows.empty:
        return _none(title, "depth")
    out = []
    for label, series in dep.settings(rows):
        for variant in _variants(series):
            mine = series[series["variant"] == variant]
            for direction in ("max", "fwd", "bwd"):
                out.append({"setting": label, "variant": variant, "gain": direction,
                            **_fit_cells(dep.fit_growth(mine, direction), target)})
    notes = [
        "Least squares of log(gain) on L over completed cells (one point per seed); growth per layer = "
        "exp(slope), 95 % CI from the slope's t interval (N - 2 degrees of freedom). 'max' is the larger "
        "of the forward and backward gain, the one C3 judges (HC's CI must lie above 1). "
        f"'L reaching {target:g}' is where the fitted line would reach the paper's ~{target:g}: an "
        "EXTRAPOLATION far beyond the depths trained, not a measurement; 'never (flat fit)' where the "
        f"growth is within {FLAT_GROWTH:.1%} per layer of 1 or its CI includes growth <= 1. mHC is "
        "expected flat (growth 1, its doubly stochastic H_res cannot amplify).",
    ]
    return Table(title, pd.DataFrame(out), notes)


def _spread_ints(values: tuple[int, ...]) -> str:
    return "—" if not values else f"{sum(values)} ({', '.join(map(str, values))})"


def _frontier_series(rows: pd.DataFrame) -> Iterator[tuple[str, str, int, pd.DataFrame]]:
    """``(scale, variant, n, cells)`` of the frontier's cells, in table order."""
    for scale, series in fr.settings(rows):
        for variant in _variants(series):
            for n, cells in fr.variant_rows(series, variant):
                yield scale, variant, n, cells


def frontier_table(frame: pd.DataFrame, histories: dict[str, list[dict[str, Any]]],
                   gains: dict[str, dict[str, Any] | None], threshold: float = fr.BLOWUP_GAIN) -> Table:
    """Per scale, variant, n and learning rate: diverged seeds, spikes, first blown-up layer."""
    title = "Stability frontier (frontier experiment)"
    rows = trained(in_experiment(frame, "frontier"))
    if rows.empty:
        return _none(title, "frontier")
    out = []
    for scale, variant, n, cells in _frontier_series(rows):
        for p in fr.lr_points(cells, histories, gains, threshold):
            out.append({
                "scale": scale, "variant": variant, "n": n, "lr": f"{p.lr:g}",
                "clip": "/".join(f"{c:g}" for c in p.grad_clip) or "?",
                "diverged": p.seeds_text(),
                "diverged at step": ", ".join(map(str, p.diverged_steps)) or "—",
                "loss spikes (total, per seed)": _spread_ints(p.spikes),
                f"first layer with single gain > {threshold:g}": "; ".join(p.blowups),
                "val loss (completed)": ", ".join(fmt_num(v) for v in p.val_loss) or "—",
            })
    notes = [
        "A learning-rate sweep without gradient clipping (clip 0), several seeds per learning rate. "
        "'diverged' = seeds whose training failed (a non-finite loss or grad norm, or a loss above "
        "train.divergence_loss_factor x ln(vocab)) of the seeds trained; a cell stopped by the optional "
        "gain ceiling is 'stopped', not diverged (a gain is a probe). 'first layer with single gain > T', "
        "per seed: walking the probes in step order (history.json, then the final model's gains.json), the "
        "lowest residual layer whose single-layer forward gain exceeds T or is not finite at the first "
        "probe where any does, and that step (layer 0 faces the embedding: the reproduction's canary); "
        "'all layers non-finite' when the whole model is NaN at once; '—' when no layer ever exceeds T.",
    ]
    return Table(title, pd.DataFrame(out), notes)


def stable_lr_table(frame: pd.DataFrame, histories: dict[str, list[dict[str, Any]]],
                    gains: dict[str, dict[str, Any] | None], threshold: float = fr.BLOWUP_GAIN) -> Table:
    """Per scale, variant and n: the largest stable learning rate and the seeds' spread around it."""
    title = "Largest stable learning rate per variant (frontier experiment)"
    rows = trained(in_experiment(frame, "frontier"))
    if rows.empty:
        return _none(title, "frontier")
    out = []
    for scale, variant, n, cells in _frontier_series(rows):
        points = fr.lr_points(cells, histories, gains, threshold)
        front = fr.frontier(points)
        if front is None:
            continue
        out.append({
            "scale": scale, "variant": variant, "n": n,
            "largest stable lr": front.text(),
            "diverged seeds per lr": ", ".join(f"{p.lr:g}: {p.seeds_text()}" for p in points),
        })
    notes = ["Largest stable lr = the largest learning rate of the sweep up to which (inclusive) no seed "
             "diverged. C4 compares HC's with mHC's at the same scale and n (claims.yaml)."]
    return Table(title, pd.DataFrame(out), notes)


def n_sweep_table(frame: pd.DataFrame) -> Table:
    """Loss gap to the baseline vs n per variant (n_sweep experiment), with 95 % CIs."""
    title = "Loss gap vs n (n_sweep experiment)"
    rows = in_experiment(frame, "n_sweep")
    if rows.empty:
        return _none(title, "n_sweep")
    out = []
    for key, group in sorted_groups(rows):
        if is_reference(key.variant):
            continue
        gap = loss_gap(frame, group, key)
        proposed = key.variant == paper.PROPOSED and not pd.isna(key.n)
        reported = paper.N_GAPS.get(int(key.n)) if proposed else None
        out.append({**group_cols(key), "cells": len(trained(group)), "diverged": diverged_text(group),
                    "gap vs baseline": fmt_estimate(gap, 4, signed=True),
                    "paper gap (mHC)": "—" if reported is None else f"{reported:+.3f}"})
    notes = ["Val loss minus the baseline's at the same scale (paired by seed when both have the same "
             "seeds), mean ± 95 % CI. C7 is judged on the mHC rows: larger n should help with diminishing "
             "returns (reported ~ n=2 -0.009, n=4 -0.018, n=8 -0.022, a secondary source)."]
    return Table(title, pd.DataFrame(out), notes)


def predicted_overhead_table(model: PerfModel | None) -> Table:
    """The kernels' performance model's predictions, labelled as predictions (C9's optional hook)."""
    title = f"Overhead, {LABEL} (kernel performance model)"
    if model is None or not model.predictions:
        return Table(title, pd.DataFrame(), [model.note if model else "no performance model read"])
    ends = [end for end, _ in model.band_assumptions]
    out = []
    for p in model.predictions:
        row = {"gpu": p.gpu, "shape": p.shape}
        band = next((b for b in model.band if b.gpu == p.gpu), None)
        for end, value in band.ends if band else [("headline", 100 * (p.ratio - 1))]:
            row[f"predicted: {end}"] = f"+{value:.1f} %"
        out.append(row)
    notes = [f"From {model.where}: a roofline model of the fused kernels' cost, {LABEL}, as a band between "
             "two sets of assumptions; C9's verdict needs the fused kernels timed on a GPU, and these rows "
             "never change it. Paper: +6.7 % at n = 4 (27B)."]
    notes += [f"{end}: {text}." for end, text in model.band_assumptions if end in ends]
    return Table(title, pd.DataFrame(out), notes)
