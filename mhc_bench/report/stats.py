"""Means and 95 % confidence intervals over seeds (Student's t and Wilson intervals from scipy).

Seeds are few (1-5), so the t quantile matters. Non-integer Welch degrees of freedom are
rounded down (a slightly wider, conservative interval), as the report always has.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from scipy import stats as sps


def t975(df: float) -> float:
    """The 0.975 quantile of t with ``df`` degrees of freedom (df rounded down); NaN below 1."""
    if not df >= 1:
        return math.nan
    return float(sps.t.ppf(0.975, math.floor(df)))


def finite(values: Iterable[float | None]) -> list[float]:
    """The finite floats of ``values`` (None, NaN and inf dropped)."""
    out = []
    for v in values:
        try:
            f = float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out.append(f)
    return out


class Interval:
    """A mean with the half width of its 95 % CI (``half`` None: no CI); ``low`` / ``high`` its ends."""

    mean: float
    half: float | None

    @property
    def low(self) -> float:
        return self.mean - (self.half or 0.0)

    @property
    def high(self) -> float:
        return self.mean + (self.half or 0.0)


@dataclass(frozen=True)
class Estimate(Interval):
    """A mean over seeds with the half width of its 95 % CI (None with fewer than 2 values)."""

    mean: float
    half: float | None
    n: int

    def excludes_zero(self) -> bool:
        return self.half is not None and (self.high < 0 or self.low > 0)


EMPTY = Estimate(math.nan, None, 0)


def _var(values: Sequence[float]) -> float:
    m = sum(values) / len(values)
    return sum((v - m) ** 2 for v in values) / (len(values) - 1)


def estimate(values: Iterable[float | None]) -> Estimate:
    """Mean and t-based 95 % CI of the finite values."""
    vals = finite(values)
    if not vals:
        return EMPTY
    mean = sum(vals) / len(vals)
    if len(vals) < 2:
        return Estimate(mean, None, 1)
    return Estimate(mean, t975(len(vals) - 1) * math.sqrt(_var(vals) / len(vals)), len(vals))


def difference(a: dict[int, float | None], b: dict[int, float | None]) -> Estimate:
    """Mean of ``a`` minus mean of ``b`` (both keyed by seed) with a 95 % CI.

    Paired over seeds when both sides have the same >= 2 seeds (seed-matched cells share
    data order and initialisation noise); otherwise Welch's interval.
    """
    a = {s: v for s, v in a.items() if finite([v])}
    b = {s: v for s, v in b.items() if finite([v])}
    if not a or not b:
        return EMPTY
    if len(a) >= 2 and set(a) == set(b):
        paired = estimate(float(a[s]) - float(b[s]) for s in sorted(a))  # type: ignore[arg-type]
        return paired
    ea, eb = estimate(a.values()), estimate(b.values())
    mean = ea.mean - eb.mean
    if ea.n < 2 or eb.n < 2:
        return Estimate(mean, None, min(ea.n, eb.n))
    va, vb = _var(finite(a.values())) / ea.n, _var(finite(b.values())) / eb.n
    se = math.sqrt(va + vb)
    if se == 0:
        return Estimate(mean, 0.0, min(ea.n, eb.n))
    df = (va + vb) ** 2 / (va**2 / (ea.n - 1) + vb**2 / (eb.n - 1))
    return Estimate(mean, t975(df) * se, min(ea.n, eb.n))


def at_chance(est: Estimate, chance: float | None, stderr: float | None, tol: float = 0.0) -> bool:
    """A score indistinguishable from chance: |mean - chance| within its CI (or 1.96 stderr, or tol)."""
    if est.n == 0 or chance is None or math.isnan(chance):
        return False
    width = max(est.half or 0.0, 1.96 * (stderr or 0.0), tol)
    return abs(est.mean - chance) <= width


def no_signal(est: Estimate, chance: float | None, stderr: float | None, tol: float = 0.0) -> bool:
    """A score that cannot tell models apart: at chance (multiple choice), or indistinguishable
    from 0 where no chance level exists (generated answers scored by exact match)."""
    if chance is None or math.isnan(chance):
        return at_chance(est, 0.0, stderr, tol)
    return at_chance(est, chance, stderr, tol)


def fmt_num(value: float | None, digits: int = 3) -> str:
    """A short number: fixed digits for ordinary values, scientific for huge or tiny ones."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    v = float(value)
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 10 ** (-digits)):
        return f"{v:.{max(digits - 1, 1)}e}"
    return f"{v:.{digits}f}"


def fmt_estimate(est: Estimate, digits: int = 3, signed: bool = False) -> str:
    """``2.345 ± 0.012 (n=3)``; one seed says so: ``2.345 (n=1, no CI)``; none: ``—``."""
    if est.n == 0:
        return "—"
    mean = fmt_num(est.mean, digits)
    if signed and est.mean >= 0:
        mean = "+" + mean
    if est.half is None:
        return f"{mean} (n=1, no CI)" if est.n == 1 else f"{mean} (no CI)"
    return f"{mean} ± {fmt_num(est.half, digits)} (n={est.n})"


def fmt_spread(values: Iterable[float | None], digits: int = 3) -> str:
    """``mean [min, max]`` over seeds; infinities count towards the max (a blown-up gain)."""
    vals = []
    for v in values:
        try:
            f = float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if not math.isnan(f):
            vals.append(f)
    if not vals:
        return "—"
    mean = sum(vals) / len(vals)
    if len(vals) == 1:
        return fmt_num(mean, digits)
    return f"{fmt_num(mean, digits)} [{fmt_num(min(vals), digits)}, {fmt_num(max(vals), digits)}]"


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion k/n (sound at 0/n and n/n, unlike the normal one)."""
    if n <= 0:
        return math.nan, math.nan
    ci = sps.binomtest(k, n).proportion_ci(confidence_level=2 * sps.norm.cdf(z) - 1, method="wilson")
    return max(0.0, float(ci.low)), min(1.0, float(ci.high))
