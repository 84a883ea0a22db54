"""C4 (HC training is unstable, mHC is not), judged on training failures and loss spikes alone.

The paper's evidence is a loss spike and a grad-norm spike in HC's training at 27B while mHC's
loss stays smooth. So a seed *fails* when its training diverged (a non-finite or exploding loss or
gradient norm: the trainer's ``diverged`` status) or its loss spiked (``spike_count > 0``). A
cell stopped by the optional gain ceiling (status ``stopped``) is censored: a gain is a probe of
the maps, bounded by construction for mHC, so counting it would make C4 restate C3; such cells
are left out of both sides and named.

Per frontier series (scale, n) and learning rate run for both variants: reproduced when at some
lr at least ``min_fraction`` of the variant's seeds failed while none of the reference's did (and
the reverse happens nowhere); not reproduced when the reference fails that way where the variant
does not; inconclusive when nothing failed (the sweep did not reach instability at this scale)
or both fail alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from mhc_bench.report import frontier as fr
from mhc_bench.report.compare import diverged, trained
from mhc_bench.report.verdicts import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    Evidence,
    Outcome,
    combine,
    no_experiment,
    rule,
    trained_cells,
)


@dataclass(frozen=True)
class Failures:
    """One variant at one learning rate: seeds counted, failed (diverged or spiked), censored."""

    lr: float
    counted: int
    diverged: int
    spiked: int
    failed: int
    censored: int

    @property
    def fraction(self) -> float:
        return self.failed / self.counted if self.counted else 0.0

    def text(self) -> str:
        stopped = f", {self.censored} stopped by the gain ceiling" if self.censored else ""
        return (f"{self.failed}/{self.counted} failed ({self.diverged} diverged, {self.spiked} spiked)"
                f"{stopped}")


def failures(rows: pd.DataFrame, lr: float) -> Failures:
    at = trained(rows[rows["lr"] == lr])
    censored = at[at["status"] == "stopped"] if "status" in at else at.iloc[0:0]
    counted = at.drop(censored.index)
    div = diverged(counted)
    spikes = counted.get("spike_count", pd.Series(0, index=counted.index)).fillna(0) > 0
    failed = counted.index.isin(div.index) | spikes.to_numpy()
    return Failures(lr, len(counted), len(div), int(spikes.sum()), int(failed.sum()), len(censored))


def _judge(variant: str, reference: str, fa: list[Failures], fb: list[Failures],
           min_fraction: float) -> tuple[str, str]:
    if not any(f.failed for f in fa + fb):
        top = max(f.lr for f in fa)
        return INCONCLUSIVE, (f"nothing failed: no seed of {variant} or {reference} diverged or spiked at lr "
                              f"up to {top:g}, so the sweep did not reach instability at this scale")
    ahead = [(a, b) for a, b in zip(fa, fb, strict=True) if a.fraction >= min_fraction and b.failed == 0]
    behind = [(a, b) for a, b in zip(fa, fb, strict=True) if b.fraction >= min_fraction and a.failed == 0]
    if ahead and not behind:
        a, _ = ahead[0]
        return REPRODUCED, (f"{variant} failed in {a.failed}/{a.counted} seeds at lr {a.lr:g}, where "
                            f"{reference} failed in none")
    if behind and not ahead:
        _, b = behind[0]
        return NOT_REPRODUCED, (f"{reference} failed in {b.failed}/{b.counted} seeds at lr {b.lr:g}, where "
                                f"{variant} failed in none")
    return INCONCLUSIVE, (f"both fail alike (or too few of {variant}'s seeds, below {min_fraction:.0%}): "
                          f"no lr separates {variant} from {reference}")


@rule
def training_instability(ev: Evidence, variant: str, reference: str, min_fraction: float,
                         blowup_gain: float = fr.BLOWUP_GAIN, experiment: str = "frontier") -> Outcome:
    """C4 on the learning-rate sweep: training failures (divergence, loss spikes), never gain readings.
    ``blowup_gain`` only sets the frontier table's "first blown-up layer" column."""
    rows = trained_cells(ev, experiment=experiment)
    if rows.empty:
        return no_experiment(ev, experiment)
    verdicts, parts, reasons = [], [], []
    for scale, series in fr.settings(rows):
        by_n = {v: dict(fr.variant_rows(series, v)) for v in (variant, reference)}
        for n in sorted(set(by_n[variant]) & set(by_n[reference])):
            a, b = by_n[variant][n], by_n[reference][n]
            lrs = sorted({float(x) for x in a["lr"].dropna()} & {float(x) for x in b["lr"].dropna()})
            if not lrs:
                continue
            fa, fb = [failures(a, lr) for lr in lrs], [failures(b, lr) for lr in lrs]
            clips = sorted({float(c) for c in series.get("grad_clip", []) if not pd.isna(c)})
            clip = "no clipping" if clips == [0.0] else f"clipping {'/'.join(f'{c:g}' for c in clips)}"
            scope = f"{experiment} experiment at {scale} n={n}, lr {lrs[0]:g}-{lrs[-1]:g} ({clip})"
            pairs = [f"lr {x.lr:g} {variant} {x.text()}, {reference} {y.text()}"
                     for x, y in zip(fa, fb, strict=True)]
            parts.append(f"{scale} n={n}: " + "; ".join(pairs))
            verdict, why = _judge(variant, reference, fa, fb, min_fraction)
            verdicts.append(verdict)
            reasons.append(f"{scope}: {why}")
    if not verdicts:
        return Outcome(INCONCLUSIVE, "—", f"{experiment} experiment: no {variant} and {reference} cells at "
                       "the same n and learning rate", rows)
    return Outcome(combine(verdicts), "; ".join(parts), "; ".join(reasons), rows,
                   summary=reasons[0].split(": ", 1)[-1] if len(reasons) == 1 else "")
