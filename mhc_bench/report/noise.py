"""The noise model of loss and accuracy verdicts: seeds *and* the machine, and the power it leaves.

CPU results are bit-identical on one machine only: another ISA, thread count, BLAS or kernel
path changes the trajectory, and at this project's scale two numerically different runs of one
seed differ about as much as two seeds (MHC_NOTES.md section 3b). So a gap's interval must
include that noise, not only the spread of the seeds one machine happened to run:

- **paired gaps**: per seed, a variant's metric minus the baseline's (same seed, same data order
  and the same shared initial weights), one per numerical replicate where a profile runs them
  (``rerun: 1``, the same cell on the reference kernels), each replicate paired with the
  baseline's replicate of the same index where it exists;
- **pooled SD** of the gaps at one scale: the gaps' deviations from their group's mean, pooled
  over every group (variant, n, map set, learning rate...) at that scale, so that a group of
  three seeds borrows the noise estimate of all the others. Replicates count as observations,
  so numerical noise is in it;
- the **interval** of a group's mean gap: ``t(0.975, S - 1) x SD / sqrt(S)`` over its S seeds
  (replicates are not independent of their seed: they add noise, never degrees of freedom);
- the **minimum detectable effect** at 80 % power, two-sided 5 %:
  ``(t(0.975, S - 1) + t(0.8, S - 1)) x SD / sqrt(S)``; where it exceeds the paper's effect the
  verdict is "underpowered", with the seeds that would bring it below.

The paper's effects and the rule are fixed in ``claims.yaml`` before any result is read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
from scipy import stats as sps

from mhc_bench.report.aggregate import by_seed_and_rerun, sorted_groups
from mhc_bench.report.compare import baseline_rows, completed, is_reference
from mhc_bench.report.stats import Interval

POWER = 0.8
ALPHA = 0.05
MAX_SEEDS = 1000  # the search for "seeds that would settle it" stops here


def paired_gaps(frame: pd.DataFrame, rows: pd.DataFrame, key: Any, column: str = "final_val_loss",
                reference: pd.DataFrame | None = None) -> dict[Any, list[float]]:
    """``seed -> [gap of replicate 0, 1, ...]``: ``rows``' completed cells minus the baseline's (or
    ``reference``'s) at the same seed; a replicate pairs with the reference's replicate of its index
    where that exists, else with the reference's first."""
    base = completed(baseline_rows(frame, key) if reference is None else reference)
    mine, theirs = by_seed_and_rerun(completed(rows), column), by_seed_and_rerun(base, column)
    out: dict[Any, list[float]] = {}
    for seed, values in mine.items():
        ref = theirs.get(seed)
        if not ref:
            continue
        gaps = [v - (ref[i] if i < len(ref) else ref[0]) for i, v in enumerate(values)]
        finite = [g for g in gaps if math.isfinite(g)]
        if finite:
            out[seed] = finite
    return out


@dataclass(frozen=True)
class Noise:
    """The pooled SD of paired gaps at one scale and what it rests on."""

    sd: float
    df: int  # degrees of freedom of the pooled estimate
    groups: int
    gaps: int  # paired gaps (seeds x replicates) it pools
    replicates: int  # of them, numerical replicates (rerun > 0)

    def text(self) -> str:
        if not self.df:
            return "no noise estimate (fewer than two seeds in every group)"
        reps = f", {self.replicates} of them numerical replicates" if self.replicates else \
            ", no numerical replicate (seed noise only)"
        return f"pooled paired-gap SD {self.sd:.4f} ({self.gaps} gaps in {self.groups} group(s){reps})"


NO_NOISE = Noise(math.nan, 0, 0, 0, 0)


def pooled_noise(frame: pd.DataFrame, scale: Any, column: str = "final_val_loss") -> Noise:
    """Pool the paired gaps of every non-reference group at ``scale`` (see the module docstring)."""
    rows = frame[frame["scale"] == scale] if "scale" in frame else frame
    squares, df, groups, gaps, replicates = 0.0, 0, 0, 0, 0
    for key, group in sorted_groups(rows):
        if is_reference(key.variant):
            continue
        values = [(seed, i, g) for seed, gs in paired_gaps(frame, group, key, column).items()
                  for i, g in enumerate(gs)]
        if len(values) < 2:
            continue
        mean = sum(g for _, _, g in values) / len(values)
        squares += sum((g - mean) ** 2 for _, _, g in values)
        df += len(values) - 1
        groups += 1
        gaps += len(values)
        replicates += sum(1 for _, i, _ in values if i > 0)
    if df == 0:
        return NO_NOISE
    return Noise(math.sqrt(squares / df), df, groups, gaps, replicates)


def t_quantile(q: float, df: int) -> float:
    return float(sps.t.ppf(q, df)) if df >= 1 else math.nan


def ci_half(sd: float, seeds: int) -> float | None:
    """95 % half width of a mean over ``seeds`` seeds with per-seed noise ``sd``."""
    if seeds < 2 or not math.isfinite(sd):
        return None
    return t_quantile(1 - ALPHA / 2, seeds - 1) * sd / math.sqrt(seeds)


def mde(sd: float, seeds: int) -> float:
    """Minimum detectable effect (80 % power, two-sided 5 %) of a paired mean over ``seeds`` seeds."""
    if seeds < 2 or not math.isfinite(sd):
        return math.inf
    return (t_quantile(1 - ALPHA / 2, seeds - 1) + t_quantile(POWER, seeds - 1)) * sd / math.sqrt(seeds)


def seeds_needed(sd: float, effect: float) -> int | None:
    """The fewest seeds whose MDE is at most ``|effect|`` (None: more than :data:`MAX_SEEDS`)."""
    if not math.isfinite(sd) or effect == 0:
        return None
    for seeds in range(2, MAX_SEEDS + 1):
        if mde(sd, seeds) <= abs(effect):
            return seeds
    return None


@dataclass(frozen=True)
class Gap(Interval):
    """A group's mean paired gap with the pooled-noise interval and its power."""

    mean: float
    seeds: int
    half: float | None
    mde: float
    noise: Noise
    sd: float  # the per-seed noise of this quantity (a contrast of two groups carries sqrt(2) x)

    def text(self, digits: int = 4) -> str:
        if not self.seeds:
            return "—"
        ci = "no CI" if self.half is None else f"95 % CI [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"
        return f"{self.mean:+.{digits}f} ({ci}, {self.seeds} seed{'s' if self.seeds != 1 else ''}, " \
               f"MDE {self.mde:.{digits}f})"


def gap(frame: pd.DataFrame, rows: pd.DataFrame, key: Any, noise: Noise, column: str = "final_val_loss",
        reference: pd.DataFrame | None = None) -> Gap:
    """The mean over seeds of the paired gaps (a seed's replicates averaged first), with the pooled noise."""
    per_seed = [sum(g) / len(g) for g in paired_gaps(frame, rows, key, column, reference).values()]
    if not per_seed:
        return Gap(math.nan, 0, None, math.inf, noise, noise.sd)
    mean = sum(per_seed) / len(per_seed)
    seeds = len(per_seed)
    return Gap(mean, seeds, ci_half(noise.sd, seeds), mde(noise.sd, seeds), noise, noise.sd)


def contrast(a: Gap, b: Gap) -> Gap:
    """``a - b`` of two groups' gaps at one scale (independent seeds; SE of a difference of means)."""
    sd = a.noise.sd * math.sqrt(2)  # each side's mean carries the per-seed noise
    if not a.seeds or not b.seeds:
        return Gap(math.nan, 0, None, math.inf, a.noise, sd)
    seeds = min(a.seeds, b.seeds)
    return Gap(a.mean - b.mean, seeds, ci_half(sd, seeds), mde(sd, seeds), a.noise, sd)


def power_clause(g: Gap, paper_effect: float) -> str:
    """``MDE 0.057 vs the paper's 0.027: underpowered, ~15 seeds would settle it`` (or powered)."""
    if not g.seeds:
        return "no paired seeds"
    need = seeds_needed(g.sd, paper_effect)
    more = f"~{need} seeds would settle it" if need else f"more than {MAX_SEEDS} seeds would be needed"
    if g.mde > abs(paper_effect):
        return f"MDE {g.mde:.4f} > the paper's |{paper_effect:+.3f}|: underpowered ({more})"
    return f"MDE {g.mde:.4f} <= the paper's |{paper_effect:+.3f}|: powered"


def effect_verdict(g: Gap, paper_effect: float) -> tuple[str, str]:
    """(verdict, why) of a gap the paper says is ``paper_effect`` (its sign is the paper's direction).

    CI entirely on the paper's side of 0: reproduced; entirely on the other side: not reproduced;
    CI across 0 with an MDE above the paper's effect: underpowered; CI across 0 at enough power:
    not reproduced when the CI excludes the paper's effect (nothing of its size), else inconclusive.
    """
    if not g.seeds:
        return "inconclusive", "no paired seeds"
    if g.half is None:
        return "underpowered", f"one seed, no CI ({power_clause(g, paper_effect)})"
    side = math.copysign(1.0, paper_effect)
    lo, hi = sorted((side * g.low, side * g.high))
    power = power_clause(g, paper_effect)
    if lo > 0:
        return "reproduced", f"95 % CI on the paper's side of 0; {power}"
    if hi < 0:
        return "not reproduced", f"95 % CI on the opposite side of 0 from the paper's; {power}"
    if g.mde > abs(paper_effect):
        return "underpowered", f"95 % CI includes 0; {power}"
    if hi < abs(paper_effect):
        return "not reproduced", (f"95 % CI includes 0 and excludes the paper's {paper_effect:+.3f}: "
                                  f"no effect of its size; {power}")
    return "inconclusive", f"95 % CI includes both 0 and the paper's {paper_effect:+.3f}; {power}"
