"""C8 (mHC beats the baseline and mostly beats HC downstream), with chance levels and power.

Judged on the downstream experiment (task-format text mixed into training, held-out items),
else on the main experiment's scores, said so. A task has signal only where some compared group
left chance upwards beyond its CI (above chance, or above 0 where no chance level exists: the
report's own "left chance"); a task where every group is at chance, or below it (a format bias of
the scoring, not an ability), is skipped. On every task with signal the accuracy gap to the
baseline is judged like a loss gap (:mod:`mhc_bench.report.noise`: paired by seed, pooled seed +
numerical noise, the minimum detectable effect against the paper's smallest gain over the
baseline, ``paper_effect``), and the gap to the rival (HC) must not be negative beyond its CI on
most tasks.
"""

from __future__ import annotations

import math

import pandas as pd

from mhc_bench.report import noise
from mhc_bench.report.aggregate import COMPARE_KEY, by_seed, eval_tasks, sorted_groups
from mhc_bench.report.compare import baseline_rows, describe_scope, in_experiment, select, trained
from mhc_bench.report.downstream import ABOVE, ABOVE_ZERO, classify, downstream_cells, left_chance_sentence
from mhc_bench.report.stats import difference, estimate, fmt_num, no_signal
from mhc_bench.report.verdicts import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    Evidence,
    Outcome,
    combine,
    rule,
)

LEFT_CHANCE = (ABOVE, ABOVE_ZERO)


def _chance(sides: dict[str, pd.DataFrame], col: str) -> float:
    values = pd.concat(list(sides.values())).get(f"{col}.chance", pd.Series(dtype=float))
    return next((float(c) for c in values if not pd.isna(c)), math.nan)


def _silent_power(mdes: list[float], paper_effect: float) -> str:
    """``MDE 0.08-0.21 of the accuracy gap vs the paper's +0.044`` over the multiple-choice tasks
    without signal: whether these seeds could have judged a gain of the paper's size at all."""
    finite = sorted(m for m in mdes if math.isfinite(m))
    if not finite:
        return ""
    span = fmt_num(finite[0]) if len(finite) == 1 else f"{fmt_num(finite[0])}-{fmt_num(finite[-1])}"
    text = f"MDE of the accuracy gap {span} vs the paper's {paper_effect:+.3f}"
    if finite[0] > abs(paper_effect):
        return text + ": underpowered even where a task leaves chance"
    return text


@rule
def downstream_beats(ev: Evidence, variant: str, baseline: str, rival: str, maps: str, chance_tol: float,
                     paper_effect: float = 0.044) -> Outcome:
    """C8: ``variant`` above ``baseline`` on every task with signal (judged against ``paper_effect``,
    accuracy points as a fraction), and not behind ``rival`` beyond CI on most of them."""
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
    scope = describe_scope(cells, experiment) + (" (this profile runs no downstream experiment: judged on "
                                                 "main's scores)" if fell_back else "")
    verdicts, parts, reasons, silent, used = [], [], [], [], [rows]
    mdes: list[float] = []  # of silent multiple-choice tasks: could a signal there have been judged?
    behind_rival, rival_compared = [], 0
    for key, group in sorted_groups(rows):
        same = {k: getattr(key, k) for k in COMPARE_KEY}
        others = {baseline: baseline_rows(cells, key),
                  rival: select(cells[cells["variant"] == rival], **same)}
        used.extend(others.values())
        for task in tasks:
            col = f"eval.{task}"
            sides = {variant: group, **others}
            present = {v: estimate(r[col]) for v, r in sides.items() if col in r and estimate(r[col]).n}
            if variant not in present or baseline not in present:
                continue
            label = f"{task} n={int(key.n)} {key.scale}"
            parts.append(f"{label}: " + ", ".join(f"{v} {fmt_num(e.mean)}" for v, e in present.items()))
            chance = _chance(sides, col)
            stderr = {v: estimate(sides[v][f"{col}.stderr"]).mean for v in present}
            pooled = noise.pooled_noise(cells, key.scale, column=col)
            g = noise.gap(cells, group, key, pooled, column=col, reference=others[baseline])
            if not any(classify(e, chance, stderr[v]) in LEFT_CHANCE and not no_signal(
                    e, chance, None if math.isnan(stderr[v]) else stderr[v], chance_tol)
                       for v, e in present.items()):
                silent.append(label)
                if not math.isnan(chance) and g.seeds:  # all-zero exact match has no noise to size
                    mdes.append(g.mde)
                continue
            verdict, why = noise.effect_verdict(g, paper_effect)
            verdicts.append(verdict)
            reasons.append(f"{label}: vs {baseline} {g.text(3)}; {why}")
            if rival in present:
                rival_compared += 1
                diff = difference(by_seed(group, col), by_seed(others[rival], col))
                if diff.half is not None and diff.high < 0:
                    behind_rival.append(f"{label}: below {rival} beyond CI")
    used_rows = pd.concat(used)
    if not parts:
        return Outcome(INCONCLUSIVE, "—", f"{scope}: no {baseline} cells next to {variant}", used_rows)
    if not verdicts:
        power = _silent_power(mdes, paper_effect)
        return Outcome(INCONCLUSIVE, "; ".join(parts),
                       f"{scope}: no signal, no task left chance: every score is within chance ± CI, or "
                       "indistinguishable from 0 where no chance level exists (" + ", ".join(silent) + ")"
                       + (f"; {power}" if power else ""),
                       used_rows, summary="no signal: no task left chance" + (f"; {power}" if power else ""))
    verdict = combine(verdicts)
    if verdict == REPRODUCED and len(behind_rival) > rival_compared / 2:
        verdict = NOT_REPRODUCED
        reasons.append(f"behind {rival} beyond CI on most tasks: " + "; ".join(behind_rival))
    note = f" ({len(silent)} task/setting(s) without signal skipped)" if silent else ""
    return Outcome(verdict, "; ".join(parts), f"{scope}: " + "; ".join(reasons) + note + ". "
                   + left_chance_sentence(ev.frame), used_rows)
