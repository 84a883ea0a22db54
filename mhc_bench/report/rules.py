"""Rule functions that judge one claim each; thresholds come from ``claims.yaml``.

A rule gets the :class:`Evidence` and its params and returns an :class:`Outcome`.
Principles throughout: each claim is judged on the cells of the experiment that settles it
(the profile's grid blocks name it) and its reason names that experiment and its scale; a
profile without that experiment gets "inconclusive" saying so; missing data is
"inconclusive" with a reason that names what is missing; a difference only counts when
its 95 % CI over seeds excludes the other side, and "not reproduced" whenever a CI
excludes the paper's direction. Rules judge only: selecting and comparing cells is in
``compare`` (and ``depth``, ``frontier``, ``downstream``), shared with the tables.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mhc_bench.report import depth as dep
from mhc_bench.report import frontier as fr
from mhc_bench.report.aggregate import (
    COMPARE_KEY,
    bench_environment,
    by_seed,
    eval_tasks,
    sorted_groups,
)
from mhc_bench.report.compare import (
    baseline_rows,
    describe_scope,
    diverged,
    gap_estimates,
    in_experiment,
    is_reference,
    loss_gap,
    matched,
    select,
    trained,
    values,
)
from mhc_bench.report.downstream import downstream_cells, left_chance_sentence
from mhc_bench.report.perf_model import PerfModel
from mhc_bench.report.stats import Estimate, difference, estimate, fmt_estimate, fmt_num, no_signal

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"


@dataclass
class Evidence:
    """What the rules may look at: the summary frame, per-cell probe histories and final gains,
    the benchmark, and the kernels' performance model (predictions, shown but never judged)."""

    frame: pd.DataFrame
    histories: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    bench: dict[str, Any] | None = None
    gains: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    perf_model: PerfModel | None = None


@dataclass
class Outcome:
    """A verdict with the measured value, the reason and the cells (or bench rows) it rests on."""

    verdict: str
    value: str
    reason: str
    rows: pd.DataFrame | None = None
    scale: str | None = None  # set directly when the evidence is not training cells


RULES: dict[str, Callable[..., Outcome]] = {}


def rule(fn: Callable[..., Outcome]) -> Callable[..., Outcome]:
    RULES[fn.__name__] = fn
    return fn


def missing_experiment(ev: Evidence, name: str) -> str:
    """Why an experiment has nothing to judge: absent from the profile, or not trained yet."""
    if in_experiment(ev.frame, name).empty:
        return f"this profile runs no {name} experiment"
    return f"the {name} experiment has no trained cells yet"


def no_experiment(ev: Evidence, name: str) -> Outcome:
    return Outcome(INCONCLUSIVE, "—", missing_experiment(ev, name))


def _trained(
    ev: Evidence, variant: str | None = None, maps: str | None = None, n: int | None = None,
    experiment: str | None = None,
) -> pd.DataFrame:
    rows = trained(ev.frame) if not ev.frame.empty else ev.frame
    if rows.empty:
        return rows
    if experiment is not None:
        rows = in_experiment(rows, experiment)
    if variant is not None:
        rows = rows[rows["variant"] == variant]
    if maps is not None:
        rows = rows[rows["maps"] == maps]
    if n is not None:
        rows = rows[rows["n"] == n]
    return rows


def _combine(verdicts: list[str]) -> str:
    if not verdicts:
        return INCONCLUSIVE
    if NOT_REPRODUCED in verdicts:
        return NOT_REPRODUCED
    return REPRODUCED if all(v == REPRODUCED for v in verdicts) else INCONCLUSIVE


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame | None:
    frames = [f for f in frames if f is not None and not f.empty]
    return pd.concat(frames).drop_duplicates("cell_id") if frames else None


def _where_it_fails(rows: pd.DataFrame, bad: pd.DataFrame, cols: tuple[str, ...], low: float | None,
                    high: float) -> str:
    """Say so when every failing cell was trained without gradient clipping, with the clipped
    cells' range: a failure only off the training recipe (the frontier's stress test) reads
    differently from one under it. Empty otherwise."""
    if bad.empty or "grad_clip" not in rows or (bad["grad_clip"].fillna(0) > 0).any():
        return ""
    lrs = sorted(float(v) for v in bad["lr"].dropna().unique())
    where = "" if not lrs else f" at lr {lrs[0]:g}" + (f"-{lrs[-1]:g}" if lrs[-1] != lrs[0] else "")
    cols_min = values(bad, "min_composite_min_col")
    why = (f" (min column sum of their composite maps {fmt_num(min(cols_min))}: the Sinkhorn projection is "
           "unconverged there)") if cols_min else ""
    text = f"; every one of them trained without gradient clipping{where}{why}"
    clipped = values(rows[rows["grad_clip"].fillna(0) > 0], *cols)
    if not clipped:
        return text
    inside = all((low is None or low <= g) and g <= high for g in clipped)
    top = fmt_num(max(clipped))
    span = f"max {top}" if low is None else f"{fmt_num(min(clipped))}-{top}"
    return f"{text}; the cells trained with clipping: {span}{' (within)' if inside else ''}"


@rule
def single_gain_within(ev: Evidence, variant: str, low: float, high: float) -> Outcome:
    """Every cell of ``variant`` (all experiments) keeps each layer's gains in ``[low, high]``."""
    rows = _trained(ev, variant)
    if rows.empty:
        return Outcome(INCONCLUSIVE, "—", f"no cells for {variant}")
    scope = describe_scope(rows)
    fwd, bwd = values(rows, "max_single_fwd"), values(rows, "max_single_bwd")
    if not fwd and not bwd:
        return Outcome(INCONCLUSIVE, "—", f"{scope}: no single-layer gains logged for {variant}", rows)
    value = "; ".join(
        f"{name} {fmt_num(min(v))}-{fmt_num(max(v))}" for name, v in (("fwd", fwd), ("bwd", bwd)) if v
    )
    bad = rows[
        [
            any(not low <= g <= high for g in values(rows.loc[[i]], "max_single_fwd", "max_single_bwd"))
            for i in rows.index
        ]
    ]
    if not bad.empty:
        return Outcome(
            NOT_REPRODUCED,
            value,
            f"{scope}: outside [{low}, {high}] in {len(bad)} of {len(rows)} cells: "
            + ", ".join(bad["cell_id"])
            + _where_it_fails(rows, bad, ("max_single_fwd", "max_single_bwd"), low, high),
            rows,
        )
    return Outcome(REPRODUCED, value, f"{scope}: within [{low}, {high}] in all {len(rows)} {variant} cells",
                   rows)


@rule
def composite_gain_bounded(ev: Evidence, variant: str, ceiling: float) -> Outcome:
    """The paper's composite gains (suffix products) of every ``variant`` cell stay <= ``ceiling``."""
    rows = _trained(ev, variant)
    gains = values(rows, "max_composite_fwd", "max_composite_bwd")
    if not gains:
        return Outcome(INCONCLUSIVE, "—", f"no cells for {variant} with composite gains", rows)
    scope = describe_scope(rows)
    top = max(gains)
    atten = values(rows, "min_composite_min_col")
    extra = f"; min column sum {fmt_num(min(atten))}" if atten else ""
    value = f"max {fmt_num(top)}{extra}"
    if top <= ceiling:
        return Outcome(REPRODUCED, value,
                       f"{scope}: max composite gain <= {ceiling} in all {len(rows)} cells", rows)
    cols = ("max_composite_fwd", "max_composite_bwd")
    peak = rows[list(cols)].max(axis=1)
    worst, bad = rows.loc[peak.idxmax(), "cell_id"], rows[peak > ceiling]
    return Outcome(NOT_REPRODUCED, value, f"{scope}: exceeds {ceiling} in {len(bad)} of {len(rows)} cells "
                   f"(worst cell {worst}){_where_it_fails(rows, bad, cols, None, ceiling)}", rows)


def _exceeds_on_main(ev: Evidence, variant: str, reference: str, factor: float, min_abs: float,
                     experiment: str) -> tuple[str, str, str, pd.DataFrame | None]:
    """(verdict, value, reason, rows): ``variant``'s composite gain above ``reference``'s."""
    rows = _trained(ev, experiment=experiment)
    if rows.empty:
        return INCONCLUSIVE, "", missing_experiment(ev, experiment), None
    a, b, common = matched(rows, variant, reference)
    if not common:
        return (INCONCLUSIVE, "", f"{experiment} experiment: no {variant} and {reference} cells at the same "
                "settings", None)
    used = pd.concat([a, b])
    scope = describe_scope(used, experiment)
    cols = ("max_composite_fwd", "max_composite_bwd")
    ga, gb = values(a, *cols), values(b, *cols)
    if not ga or not gb:
        return INCONCLUSIVE, "", f"{scope}: composite gains not logged", used
    top_a, top_b = max(ga), max(gb)
    ratio = top_a / top_b if top_b > 0 else math.inf
    value = (f"{experiment}: {variant} max {fmt_num(top_a)} vs {reference} max {fmt_num(top_b)} "
             f"(x{fmt_num(ratio, 2)})")
    if top_a >= factor * top_b and top_a > min_abs:
        return REPRODUCED, value, f"{scope}: {variant} >= {factor} x {reference} and > {min_abs}", used
    return (NOT_REPRODUCED, value, f"{scope}: {variant} composite gain stays below {factor} x {reference} "
            f"or {min_abs}", used)


# A per-layer growth this close to 1 is flat for any depth the paper trains (x1.001 per layer
# is +6 % over 60 layers): mHC's gains of 1.0000000x fit a CI that excludes 1 by ~1e-9.
FLAT_GROWTH = 1e-3


def _factor_text(fit: dep.GrowthFit) -> str:
    ci = "" if fit.half is None else f" [{fit.factor_low:.3f}, {fit.factor_high:.3f}]"
    return f"x{fit.factor:.3f}/layer{ci}"


def _reference_growth(fit: dep.GrowthFit | None, reference: str) -> str:
    if fit is None:
        return f"{reference}: no fit (fewer than two depths)"
    if fit.half is None:
        shape = "no CI"
    elif fit.factor_low > 1 + FLAT_GROWTH:
        shape = "grows"
    elif fit.factor_high < 1 - FLAT_GROWTH:
        shape = "shrinks"
    elif fit.factor_low > 1 or fit.factor_high < 1:
        shape = f"flat: within {FLAT_GROWTH:.1%} per layer of 1"
    else:
        shape = "flat: CI includes 1"
    return f"{reference} {_factor_text(fit)} ({shape})"


def _growth_with_depth(ev: Evidence, variant: str, reference: str, target: float,
                       experiment: str) -> tuple[list[str], list[str], list[str], list[pd.DataFrame]]:
    """(verdicts, values, reasons, rows): per depth series, does ``variant``'s gain grow with L?"""
    rows = _trained(ev, experiment=experiment)
    if rows.empty:
        return [INCONCLUSIVE], [], [f"{missing_experiment(ev, experiment)}, so growth with depth is "
                                    "untested"], []
    verdicts, parts, reasons, used = [], [], [], []
    for label, series in dep.settings(rows):
        mine = series[series["variant"] == variant]
        if mine.empty:
            continue
        used.append(series)
        fit = dep.fit_growth(mine, "max")
        ref = _reference_growth(dep.fit_growth(series[series["variant"] == reference], "max"), reference)
        depths = "/".join(str(L) for L in sorted({int(v) for v in dep.layers(mine).dropna()}))
        seeds = mine["seed"].dropna().nunique()
        scope = f"{experiment} experiment at {label}, L={depths} ({seeds} seed{'s' if seeds != 1 else ''})"
        left_out = len(diverged(mine))
        note = f"; {left_out} diverged {variant} cell(s) left out of the fit" if left_out else ""
        if fit is None:
            verdicts.append(INCONCLUSIVE)
            reasons.append(f"{scope}: fewer than two depths with completed {variant} cells{note}")
            continue
        reach = fit.reaches(target)
        reach_txt = (f"fit reaches {target:g} at L ~ {reach:.0f} (extrapolation)" if reach is not None
                     else f"fit never reaches {target:g} (no growth)")
        parts.append(f"{experiment} {label}: {variant} {_factor_text(fit)}, {reach_txt}; {ref}")
        if fit.half is None:
            verdict, why = INCONCLUSIVE, f"{fit.points} points only: no CI on the growth"
        elif fit.factor_low > 1:
            verdict, why = REPRODUCED, "per-layer growth's 95 % CI above 1"
        elif fit.factor_high < 1:
            verdict, why = NOT_REPRODUCED, "per-layer growth's 95 % CI below 1: the gain shrinks with depth"
        else:
            verdict, why = INCONCLUSIVE, "per-layer growth's 95 % CI includes 1"
        verdicts.append(verdict)
        reasons.append(f"{scope}: {variant} {_factor_text(fit)}, {why}; {ref}{note}")
    if not used:
        return [INCONCLUSIVE], [], [f"{experiment} experiment has no {variant} cells"], []
    return verdicts, parts, reasons, used


@rule
def composite_gain_grows(
    ev: Evidence, variant: str, reference: str, factor: float, min_abs: float, target: float,
    main: str = "main", depth: str = "depth",
) -> Outcome:
    """C3: on ``main``, ``variant``'s composite gain exceeds ``reference``'s; on ``depth``, it grows
    with the number of residual layers (log-linear fit, per-layer growth CI above 1)."""
    verdict, value, reason, main_rows = _exceeds_on_main(ev, variant, reference, factor, min_abs, main)
    d_verdicts, d_values, d_reasons, d_rows = _growth_with_depth(ev, variant, reference, target, depth)
    parts = [v for v in [value, *d_values] if v]
    return Outcome(_combine([verdict, *d_verdicts]), "; ".join(parts) or "—", "; ".join([reason, *d_reasons]),
                   _concat([main_rows, *d_rows]))


def _frontier_text(points: list[fr.LrPoint]) -> str:
    return ", ".join(f"{p.lr:g}: {p.seeds_text()}" for p in points)


def _judge_frontier(variant: str, reference: str, pa: list[fr.LrPoint], pb: list[fr.LrPoint],
                    others_diverged: bool, min_fraction: float) -> tuple[str, str]:
    """(verdict, why) for one frontier series; ``pa``/``pb`` on the same learning rates."""
    fa, fb = fr.frontier(pa), fr.frontier(pb)
    assert fa is not None and fb is not None
    if not (fa.any_diverged or fb.any_diverged):
        if not others_diverged:
            return INCONCLUSIVE, (f"the sweep did not reach instability: no seed of any variant diverged at "
                                  f"lr up to {fa.top:g}")
        return INCONCLUSIVE, (f"neither {variant} nor {reference} diverged at lr up to {fa.top:g}: the "
                              f"sweep did not reach {variant}'s instability")
    if fb.rank < fa.rank:
        first = next(p for p in pb if p.diverged)
        return NOT_REPRODUCED, (f"{reference} diverges first ({first.seeds_text()} seeds at lr {first.lr:g}) "
                                f"while {variant} is stable up to {fa.text()}")
    if fa.rank == fb.rank:
        first_a, first_b = next(p for p in pa if p.diverged), next(p for p in pb if p.diverged)
        return INCONCLUSIVE, (f"both first diverge at lr {first_a.lr:g} ({variant} {first_a.seeds_text()}, "
                              f"{reference} {first_b.seeds_text()} seeds): the sweep's steps cannot "
                              "separate them")
    limit = math.inf if not fb.any_diverged else fb.rank
    best = max((p for p in pa if p.diverged and p.lr <= limit), key=lambda p: (p.fraction, -p.lr))
    where = f"lr {best.lr:g}, where {reference} diverged in no seed"
    if best.fraction >= min_fraction:
        return REPRODUCED, f"{variant} diverged in {best.seeds_text()} seeds at {where}"
    return INCONCLUSIVE, (f"{variant} diverged in only {best.seeds_text()} seeds at {where}: below "
                          f"{min_fraction:.0%} of seeds, within seed noise")


@rule
def stability_frontier(
    ev: Evidence, variant: str, reference: str, min_fraction: float, blowup_gain: float,
    experiment: str = "frontier",
) -> Outcome:
    """C4 on the learning-rate sweep: ``variant``'s largest stable lr is below ``reference``'s."""
    rows = _trained(ev, experiment=experiment)
    if rows.empty:
        return no_experiment(ev, experiment)
    verdicts, parts, reasons = [], [], []
    for scale, series in fr.settings(rows):
        by_n = {v: dict(fr.variant_rows(series, v)) for v in (variant, reference)}
        common = sorted(set(by_n[variant]) & set(by_n[reference]))
        if not common:
            verdicts.append(INCONCLUSIVE)
            reasons.append(f"{experiment} experiment at {scale}: no {variant} and {reference} cells at the "
                           "same n")
            continue
        others_diverged = not diverged(series).empty
        clips = sorted({float(c) for c in series.get("grad_clip", []) if not pd.isna(c) and c > 0})
        clip_note = f" (with gradient clipping {'/'.join(f'{c:g}' for c in clips)})" if clips else ""
        for n in common:
            pa = fr.lr_points(by_n[variant][n], ev.histories, ev.gains, blowup_gain)
            pb = fr.lr_points(by_n[reference][n], ev.histories, ev.gains, blowup_gain)
            lrs = {p.lr for p in pa} & {p.lr for p in pb}
            pa, pb = [p for p in pa if p.lr in lrs], [p for p in pb if p.lr in lrs]
            if not lrs:
                verdicts.append(INCONCLUSIVE)
                reasons.append(f"{experiment} experiment at {scale} n={n}: no learning rate run for both")
                continue
            fa, fb = fr.frontier(pa), fr.frontier(pb)
            assert fa is not None and fb is not None
            seeds = series["seed"].dropna().nunique()
            scope = (f"{experiment} experiment at {scale} n={n}, lr {min(lrs):g}-{max(lrs):g} "
                     f"({seeds} seed{'s' if seeds != 1 else ''}){clip_note}")
            parts.append(f"{scale} n={n}: largest stable lr {variant} {fa.text()}, {reference} {fb.text()}; "
                         f"diverged seeds per lr: {variant} {_frontier_text(pa)}; "
                         f"{reference} {_frontier_text(pb)}")
            verdict, why = _judge_frontier(variant, reference, pa, pb, others_diverged, min_fraction)
            verdicts.append(verdict)
            reasons.append(f"{scope}: {why}")
    return Outcome(_combine(verdicts), "; ".join(parts) or "—", "; ".join(reasons), rows)


def _gap_verdict(gap: Estimate) -> str:
    if gap.n == 0 or gap.half is None:
        return INCONCLUSIVE
    if gap.high < 0:
        return REPRODUCED
    return NOT_REPRODUCED if gap.low > 0 else INCONCLUSIVE


def _gap_reason(gap: Estimate, verdict: str) -> str:
    ci = "" if gap.half is None else f" [{gap.low:+.4f}, {gap.high:+.4f}]"
    if verdict == REPRODUCED:
        return f"95 % CI{ci} below 0"
    if verdict == NOT_REPRODUCED:
        return f"95 % CI{ci} above 0: the opposite of the paper's direction"
    if gap.n == 0:
        return "no completed cells"
    return "one seed, no CI" if gap.half is None else "CI overlaps 0"


@rule
def loss_gap_negative(ev: Evidence, variant: str, maps: str, experiment: str = "main") -> Outcome:
    """C5: ``variant``'s loss minus the baseline's, CI below 0, on ``experiment``'s cells."""
    cells = _trained(ev, experiment=experiment)
    if cells.empty:
        return no_experiment(ev, experiment)
    rows = cells[(cells["variant"] == variant) & (cells["maps"] == maps)]
    if rows.empty:
        return Outcome(INCONCLUSIVE, "—", f"{experiment} experiment has no {variant} cells with maps {maps}")
    parts, verdicts, reasons, used = [], [], [], [rows]
    everyone = _trained(ev)
    for key, group in sorted_groups(rows):
        base = baseline_rows(everyone, key)
        label = f"n={int(key.n)} {key.scale}"
        if base.empty:
            reasons.append(f"{label}: no baseline cells at {key.scale}")
            verdicts.append(INCONCLUSIVE)
            continue
        used.append(base)
        gap = loss_gap(everyone, group, key)
        parts.append(f"{label}: {fmt_estimate(gap, 4, signed=True)}")
        verdict = _gap_verdict(gap)
        verdicts.append(verdict)
        reasons.append(f"{label}: {_gap_reason(gap, verdict)}")
    used_rows = pd.concat(used)
    reason = f"{describe_scope(used_rows, experiment)}: " + "; ".join(reasons)
    return Outcome(_combine(verdicts), "; ".join(parts) or "—", reason, used_rows)


def _ordered(points: list[tuple[str, Estimate]]) -> tuple[str, str]:
    """Judge "non-increasing along the list": (verdict, why). Noise = CIs over seeds."""
    points = [(k, e) for k, e in points if e.n > 0]
    if len(points) < 2:
        return INCONCLUSIVE, "fewer than two settings with results"
    for (ka, ea), (kb, eb) in itertools.combinations(points, 2):  # any later setting worse beyond noise
        if ea.half is not None and eb.half is not None and eb.low > ea.high:
            return NOT_REPRODUCED, (f"{kb} is worse than {ka} beyond seed noise "
                                    f"({fmt_estimate(eb, 4)} vs {fmt_estimate(ea, 4)})")
    for (ka, ea), (kb, eb) in itertools.pairwise(points):
        if eb.mean > ea.mean:
            return INCONCLUSIVE, f"{kb} not better than {ka} (within seed noise)"
    (k0, first), (k1, last) = points[0], points[-1]
    if first.half is not None and last.half is not None and last.high < first.low:
        return REPRODUCED, f"ordered; {k1} beats {k0} beyond seed noise"
    return INCONCLUSIVE, f"ordered by means, but {k1} vs {k0} is within seed noise (or one seed)"


SETTING = ["variant", "n", "scale", "lr", "grad_clip", "mix_weight"]


@rule
def ablation_order(ev: Evidence, variant: str | None, order: list[str], res_share: float,
                   experiment: str = "ablation") -> Outcome:
    """C6: on ``experiment``'s ``variant`` cells, gaps fall along ``order`` and H_res gives most of it."""
    cells = _trained(ev, experiment=experiment)
    if cells.empty:
        return no_experiment(ev, experiment)
    if variant is None:
        rows = cells[~cells["variant"].map(is_reference)]
    else:
        rows = cells[cells["variant"] == variant]
    rows = rows[rows["maps"].isin(order)]
    everyone = _trained(ev)
    verdicts, parts, reasons, used = [], [], [], []
    for setting_key, setting in rows.groupby(SETTING, sort=True, dropna=False):
        if setting["maps"].nunique() < 2:
            continue
        var, n, scale, lr = setting_key[:4]
        used.append(setting)
        gaps = dict(gap_estimates(everyone, setting, "maps"))
        points = [(m, gaps[m]) for m in order if m in gaps]
        verdict, why = _ordered(points)
        label = f"{var} n={int(n)} {scale} lr={lr:g}"
        ordered_means = {m: e.mean for m, e in points if e.n}
        if verdict == REPRODUCED and {"none", "res", order[-1]} <= set(ordered_means):
            total = ordered_means["none"] - ordered_means[order[-1]]
            share = (ordered_means["none"] - ordered_means["res"]) / total if total > 0 else math.nan
            if not share >= res_share:
                verdict, why = NOT_REPRODUCED, f"H_res gives only {fmt_num(share * 100, 0)} % of the gain"
        verdicts.append(verdict)
        parts.append(f"{label}: " + ", ".join(f"{m} {fmt_num(e.mean, 4)}" for m, e in points if e.n))
        reasons.append(f"{label}: {why}")
    if not used:
        who = variant or "any variant"
        return Outcome(INCONCLUSIVE, "—", f"{experiment} experiment has no {who} cells with two or more map "
                       "sets at one setting")
    used_rows = pd.concat(used)
    reason = f"{describe_scope(used_rows, experiment)}: " + "; ".join(reasons)
    return Outcome(_combine(verdicts), "; ".join(parts), reason, used_rows)


@rule
def gap_improves_with_n(ev: Evidence, variant: str, maps: str, experiment: str = "n_sweep") -> Outcome:
    """C7: on ``experiment``'s cells, ``variant``'s loss gap to the baseline falls as n grows."""
    cells = _trained(ev, experiment=experiment)
    if cells.empty:
        return no_experiment(ev, experiment)
    rows = cells[(cells["variant"] == variant) & (cells["maps"] == maps)]
    if rows.empty:
        return Outcome(INCONCLUSIVE, "—", f"{experiment} experiment has no {variant} cells with maps {maps}")
    everyone = _trained(ev)
    verdicts, parts, reasons = [], [], []
    for (scale, lr, _clip, _mix), setting in rows.groupby(["scale", "lr", "grad_clip", "mix_weight"],
                                                         sort=True, dropna=False):
        points = [(f"n={int(n)}", e) for n, e in gap_estimates(everyone, setting, "n")]
        label = f"{scale} lr={lr:g}"
        parts.append(f"{label}: " + ", ".join(f"{k} {fmt_num(e.mean, 4)}" for k, e in points if e.n))
        if len([p for p in points if p[1].n]) < 2:
            verdicts.append(INCONCLUSIVE)
            reasons.append(f"{label}: only {', '.join(k for k, _ in points)} trained; no cells for other n")
            continue
        verdict, why = _ordered(points)
        verdicts.append(verdict)
        reasons.append(f"{label}: {why}")
    reason = f"{describe_scope(rows, experiment)}: " + "; ".join(reasons)
    return Outcome(_combine(verdicts), "; ".join(parts), reason, rows)


@rule
def downstream_beats(
    ev: Evidence, variant: str, baseline: str, rival: str, maps: str, chance_tol: float
) -> Outcome:
    """C8 on the downstream experiment (else main's scores, said so): ``variant`` above ``baseline``
    beyond CI on every task with signal, and not behind ``rival`` on most."""
    cells, experiment, fell_back = downstream_cells(ev.frame)
    cells = trained(cells)
    where = (f"{experiment} experiment (this profile runs no downstream experiment: judged on main's scores)"
             if fell_back else f"{experiment} experiment")
    if cells.empty:
        why = ("this profile runs no downstream or main experiment" if fell_back and
               in_experiment(ev.frame, experiment).empty else f"{where}: no trained cells yet")
        return Outcome(INCONCLUSIVE, "—", why)
    tasks = eval_tasks(cells)
    rows = cells[(cells["variant"] == variant) & (cells["maps"] == maps)]
    if not tasks or rows.empty:
        missing = "no eval scores" if not tasks else f"no {variant} cells"
        return Outcome(INCONCLUSIVE, "—", f"{where}: {missing}")
    scope = describe_scope(cells, experiment)
    if fell_back:
        scope += " (this profile runs no downstream experiment: judged on main's scores)"
    at_chance_tasks, parts, used, compared, ahead_sig = [], [], [rows], 0, 0
    below: dict[str, list[str]] = {baseline: [], rival: []}  # behind beyond CI
    behind: dict[str, list[str]] = {baseline: [], rival: []}  # behind by means only
    rival_compared = 0
    for key, group in sorted_groups(rows):
        others = {baseline: baseline_rows(cells, key),
                  rival: select(cells[cells["variant"] == rival],
                                **{k: getattr(key, k) for k in COMPARE_KEY})}
        used.extend(others.values())
        for task in tasks:
            col = f"eval.{task}"
            sides = {variant: group, **others}
            ests = {v: estimate(r[col]) for v, r in sides.items() if col in r}
            chance = (
                next(
                    (float(c) for c in pd.concat(list(sides.values()))[f"{col}.chance"] if not pd.isna(c)),
                    math.nan,
                )
                if f"{col}.chance" in group
                else math.nan
            )
            stderr = {v: estimate(r[f"{col}.stderr"]).mean for v, r in sides.items()}
            present = {v: e for v, e in ests.items() if e.n}
            if variant not in present or len(present) < 2:
                continue
            label = f"{task} n={int(key.n)} {key.scale}"
            parts.append(f"{label}: " + ", ".join(f"{v} {fmt_num(e.mean)}" for v, e in present.items()))
            if all(
                no_signal(e, chance, None if math.isnan(stderr[v]) else stderr[v], chance_tol)
                for v, e in present.items()
            ):
                at_chance_tasks.append(label)
                continue
            compared += 1
            for other in present:
                if other == variant:
                    continue
                rival_compared += other == rival
                diff = difference(by_seed(group, col), by_seed(sides[other], col))
                if diff.half is not None and diff.high < 0:
                    below[other].append(f"{label}: below {other} beyond CI")
                elif diff.mean < 0:
                    behind[other].append(f"{label}: {other} ahead within CI")
                elif other == baseline and diff.excludes_zero():
                    ahead_sig += 1
    value = "; ".join(parts) or "—"
    used_rows = pd.concat(used)
    if not parts:
        return Outcome(INCONCLUSIVE, "—", f"{scope}: no cells for {baseline} or {rival} next to {variant}",
                       used_rows)
    if compared == 0:
        return Outcome(
            INCONCLUSIVE,
            value,
            f"{scope}: no signal, no task left chance: every score is within chance ± CI, or "
            "indistinguishable from 0 where no chance level exists (" + ", ".join(at_chance_tasks) + ")",
            used_rows,
        )
    note = f" ({len(at_chance_tasks)} task/setting(s) without signal skipped)" if at_chance_tasks else ""
    note += f". {left_chance_sentence(ev.frame)}"
    # "beats the baseline" must hold on every task, "mostly beats HC" on more than half.
    if below[baseline] or len(below[rival]) > rival_compared / 2:
        return Outcome(NOT_REPRODUCED, value, f"{scope}: " + "; ".join(below[baseline] + below[rival]) + note,
                       used_rows)
    if behind[baseline] or len(below[rival] + behind[rival]) > rival_compared / 2:
        return Outcome(
            INCONCLUSIVE,
            value,
            f"{scope}: "
            + "; ".join(below[baseline] + behind[baseline] + below[rival] + behind[rival])
            + note,
            used_rows,
        )
    if ahead_sig < compared:
        return Outcome(
            INCONCLUSIVE,
            value,
            f"{scope}: ahead by means, but the gain over {baseline} is within seed "
            f"noise in {compared - ahead_sig} of {compared} task/setting(s){note}",
            used_rows,
        )
    return Outcome(
        REPRODUCED, value, f"{scope}: {variant} above {baseline} beyond CI on every task scored{note}",
        used_rows,
    )


def _is_cpu(hardware: dict[str, Any]) -> bool:
    for key in ("device", "accelerator", "gpu", "cuda"):
        val = hardware.get(key)
        if isinstance(val, str) and val.lower().startswith("cpu"):
            return True
        if key in ("gpu", "cuda") and key in hardware and not val:
            return True
    return False


NEEDS_GPU = ("needs a GPU: the claim is about fused kernels (Triton here), which can only be timed on a "
             "GPU; on CPU they run in Triton's interpreter, whose times say nothing about fused kernels, "
             "and the torch/compile paths are the unfused case the paper quotes at ~25-30 %")


def _predicted(ev: Evidence) -> str:
    """The performance model's prediction, labelled as one, or why there is none."""
    if ev.perf_model is None:
        return "no performance model read"
    return ev.perf_model.summary()


@rule
def overhead_ratio(
    ev: Evidence, variant: str, n: int, paper_ratio: float, tolerance: float, fused_paths: list[str]
) -> Outcome:
    """C9 from bench.json: only fused paths timed on a GPU can judge it; else a GPU is needed (and the
    performance model's prediction, if any, is shown as a prediction)."""
    bench = ev.bench or {}
    rows = [
        r
        for r in bench.get("rows", [])
        if r.get("variant") == variant and r.get("n") == n and r.get("ratio_to_baseline") is not None
    ]
    predicted = _predicted(ev)
    if not rows:
        cells = _trained(ev, variant, n=n)
        return Outcome(
            INCONCLUSIVE,
            "—",
            f"{NEEDS_GPU}; no bench.json rows for {variant} n={n} (training cells time the torch path only; "
            f"see the overhead table); {predicted}",
            cells,
        )
    rows.sort(key=lambda r: (str(r.get("path")), r.get("d_model") or 0))
    value = "; ".join(f"{r.get('path')} d{r.get('d_model')}: {r['ratio_to_baseline']:.3f}" for r in rows)
    dims = sorted({str(r.get("d_model")) for r in rows})
    paths = "/".join(sorted({str(r.get("path")) for r in rows}))
    scale = f"bench: d_model {'/'.join(dims)}, n {n}, paths {paths}"
    fused = [r for r in rows if r.get("path") in fused_paths]
    if not fused:
        return Outcome(
            INCONCLUSIVE,
            value,
            f"{NEEDS_GPU}; no fused kernels measured ({'/'.join(fused_paths)}), so the measured paths "
            f"cannot test the +6.7 % claim; {predicted}",
            scale=scale,
        )
    if _is_cpu(bench_environment(bench)[0]):
        return Outcome(
            INCONCLUSIVE,
            value,
            f"{NEEDS_GPU}; the fused path was timed on CPU (Triton interpreter): not a timing of fused "
            f"kernels; {predicted}",
            scale=scale,
        )
    best = max(fused, key=lambda r: r.get("d_model") or 0)  # the largest width is closest to the paper
    ratio = float(best["ratio_to_baseline"])
    limit = paper_ratio + tolerance
    verdict = REPRODUCED if ratio <= limit else NOT_REPRODUCED
    return Outcome(
        verdict,
        value,
        f"{best.get('path')} d{best.get('d_model')}: {ratio:.3f} "
        f"{'<=' if verdict == REPRODUCED else '>'} {limit:.3f} (paper {paper_ratio} + {tolerance})",
        scale=scale,
    )
