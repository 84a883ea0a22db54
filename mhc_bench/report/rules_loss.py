"""Loss claims C5 (mHC below the baseline), C6 (H_res carries most of the gain), C7 (larger n helps).

Each is a gap, or a contrast of gaps, judged against the paper's effect with the noise model of
:mod:`mhc_bench.report.noise` (seeds and numerical replicates pooled at the scale, minimum
detectable effect, "underpowered" where it exceeds the paper's effect). A setting whose n
streams collapsed onto one (the final layer's stream spread below ``collapse_spread``) cannot
test an n-stream claim: it is reported "degenerate", not judged.
"""

from __future__ import annotations

import pandas as pd

from mhc_bench.report import noise
from mhc_bench.report.aggregate import COMPARE_KEY, sorted_groups
from mhc_bench.report.compare import baseline_rows, describe_scope, select
from mhc_bench.report.stats import fmt_num
from mhc_bench.report.verdicts import (
    DEGENERATE,
    INCONCLUSIVE,
    NOT_REPRODUCED,
    Evidence,
    Outcome,
    collapsed,
    combine,
    no_experiment,
    rule,
    trained_cells,
)


def _variant_cells(ev: Evidence, variant: str, maps: str, experiment: str) -> pd.DataFrame | Outcome:
    """The trained cells of ``variant`` with ``maps`` in ``experiment``, or the outcome saying why none."""
    cells = trained_cells(ev, experiment=experiment)
    if cells.empty:
        return no_experiment(ev, experiment)
    rows = cells[(cells["variant"] == variant) & (cells["maps"] == maps)]
    if rows.empty:
        return Outcome(INCONCLUSIVE, "—", f"{experiment} experiment has no {variant} cells with maps {maps}")
    return rows


def _degenerate(rows: pd.DataFrame, threshold: float, label: str) -> str | None:
    """The reason a group cannot test an n-stream claim, or None."""
    gone, spread = collapsed(rows, threshold)
    if not gone:
        return None
    return (f"{label}: degenerate, streams collapsed (final stream spread {fmt_num(spread, 4)} < "
            f"{threshold:g}): this n-stream model computes the baseline plus gates")


@rule
def loss_gap_negative(ev: Evidence, variant: str, maps: str, paper_effect: float, collapse_spread: float,
                      experiment: str = "main", reference: str | None = None) -> Outcome:
    """C5: ``variant``'s loss minus the baseline's (or ``reference``'s) on ``experiment``'s cells, judged
    against the paper's effect with pooled seed + numerical noise."""
    rows = _variant_cells(ev, variant, maps, experiment)
    if isinstance(rows, Outcome):
        return rows
    everyone = trained_cells(ev)
    parts, verdicts, reasons, used = [], [], [], [rows]
    for key, group in sorted_groups(rows):
        label = f"n={int(key.n)} {key.scale}" + (f" {key.knobs}" if key.knobs else "")
        same = {k: getattr(key, k) for k in COMPARE_KEY}
        other = (baseline_rows(everyone, key) if reference is None else
                 select(everyone[everyone["variant"] == reference], **same))
        if other.empty:
            reasons.append(f"{label}: no {reference or 'baseline'} cells at {key.scale}")
            verdicts.append(INCONCLUSIVE)
            continue
        used.append(other)
        degenerate = _degenerate(group, collapse_spread, label)
        if degenerate:
            verdicts.append(DEGENERATE)
            reasons.append(degenerate)
            continue
        pooled = noise.pooled_noise(everyone, key.scale)
        g = noise.gap(everyone, group, key, pooled, reference=None if reference is None else other)
        parts.append(f"{label}: {g.text()} vs paper {paper_effect:+.3f}")
        verdict, why = noise.effect_verdict(g, paper_effect)
        verdicts.append(verdict)
        reasons.append(f"{label}: gap {g.text()}; {why}; {pooled.text()}")
    used_rows = pd.concat(used)
    reason = f"{describe_scope(used_rows, experiment)}: " + "; ".join(reasons)
    return Outcome(combine(verdicts), "; ".join(parts) or "—", reason, used_rows,
                   summary=reasons[0] if len(reasons) == 1 else "")


def _group_gaps(everyone: pd.DataFrame, setting: pd.DataFrame, by: str,
                pooled: noise.Noise) -> dict:
    return {getattr(key, by): (noise.gap(everyone, group, key, pooled), group)
            for key, group in sorted_groups(setting)}


SETTING = ["variant", "n", "scale", "lr", "grad_clip", "mix_weight"]


@rule
def ablation_order(ev: Evidence, variant: str, order: list[str], res_share: float, paper_effect: float,
                   collapse_spread: float, experiment: str = "ablation") -> Outcome:
    """C6 on ``variant``'s ablation cells: learning H_res alone (``order[1]``) against none (``order[0]``)
    is the paper's main effect (Table 1: -0.022 of -0.027), judged with the noise model; when it holds,
    H_res must give at least ``res_share`` of the full map set's gain."""
    cells = trained_cells(ev, experiment=experiment)
    if cells.empty:
        return no_experiment(ev, experiment)
    rows = cells[(cells["variant"] == variant) & cells["maps"].isin(order)]
    everyone = trained_cells(ev)
    verdicts, parts, reasons, used = [], [], [], []
    none_set, res_set, full_set = order[0], order[1], order[-1]
    for (var, n, scale, lr, *_), setting in rows.groupby(SETTING, sort=True, dropna=False):
        if setting["maps"].nunique() < 2:
            continue
        label = f"{var} n={int(n)} {scale} lr={lr:g}"
        used.append(setting)
        pooled = noise.pooled_noise(everyone, scale)
        gaps = _group_gaps(everyone, setting, "maps", pooled)
        parts.append(f"{label}: " + ", ".join(f"{m} {fmt_num(gaps[m][0].mean, 4)}"
                                              for m in order if m in gaps))
        if res_set in gaps and (why := _degenerate(gaps[res_set][1], collapse_spread, f"{label} {res_set}")):
            verdicts.append(DEGENERATE)
            reasons.append(why)
            continue
        if none_set not in gaps or res_set not in gaps:
            verdicts.append(INCONCLUSIVE)
            reasons.append(f"{label}: needs both the {none_set} and {res_set} rows")
            continue
        effect = noise.contrast(gaps[res_set][0], gaps[none_set][0])
        verdict, why = noise.effect_verdict(effect, paper_effect)
        text = f"{res_set} - {none_set} {effect.text()}"
        if verdict == "reproduced" and full_set in gaps:
            total = gaps[full_set][0].mean - gaps[none_set][0].mean
            share = effect.mean / total if total < 0 else float("nan")
            if not share >= res_share:
                why = f"H_res gives only {fmt_num(share * 100, 0)} % of the full gain"
                verdict = NOT_REPRODUCED
        verdicts.append(verdict)
        reasons.append(f"{label}: {text}; {why}; {pooled.text()}")
    if not used:
        return Outcome(INCONCLUSIVE, "—", f"{experiment} experiment has no {variant} cells with two or more "
                       "map sets at one setting")
    used_rows = pd.concat(used)
    reason = f"{describe_scope(used_rows, experiment)}: " + "; ".join(reasons)
    return Outcome(combine(verdicts), "; ".join(parts), reason, used_rows,
                   summary=reasons[0].split(": ", 1)[-1] if len(reasons) == 1 else "")


@rule
def gap_improves_with_n(ev: Evidence, variant: str, maps: str, paper_effect: float, collapse_spread: float,
                        experiment: str = "n_sweep") -> Outcome:
    """C7 on the n sweep: the gap at the largest n minus the gap at the smallest (the paper's
    -0.022 - (-0.009)), judged with the noise model; a collapsed n > 1 setting is degenerate."""
    rows = _variant_cells(ev, variant, maps, experiment)
    if isinstance(rows, Outcome):
        return rows
    everyone = trained_cells(ev)
    verdicts, parts, reasons = [], [], []
    for (scale, lr, _clip, _mix), setting in rows.groupby(["scale", "lr", "grad_clip", "mix_weight"],
                                                         sort=True, dropna=False):
        label = f"{scale} lr={lr:g}"
        pooled = noise.pooled_noise(everyone, scale)
        gaps = {int(n): g for n, g in _group_gaps(everyone, setting, "n", pooled).items() if not pd.isna(n)}
        parts.append(f"{label}: " + ", ".join(f"n={n} {fmt_num(g.mean, 4)}"
                                              for n, (g, _) in sorted(gaps.items())))
        gone = [why for n, (_, group) in sorted(gaps.items()) if n > 1
                and (why := _degenerate(group, collapse_spread, f"{label} n={n}"))]
        if gone:
            verdicts.append(DEGENERATE)
            reasons.append("; ".join(gone))
            continue
        if len(gaps) < 2:
            verdicts.append(INCONCLUSIVE)
            reasons.append(f"{label}: one n only")
            continue
        low, high = min(gaps), max(gaps)
        effect = noise.contrast(gaps[high][0], gaps[low][0])
        verdict, why = noise.effect_verdict(effect, paper_effect)
        verdicts.append(verdict)
        reasons.append(f"{label}: n={high} - n={low} {effect.text()}; {why}; {pooled.text()}")
    reason = f"{describe_scope(rows, experiment)}: " + "; ".join(reasons)
    return Outcome(combine(verdicts), "; ".join(parts), reason, rows,
                   summary=reasons[0].split(": ", 1)[-1] if len(reasons) == 1 else "")
