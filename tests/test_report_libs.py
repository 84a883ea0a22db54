"""The report's statistics and locks come from libraries (scipy, filelock): same outputs as the
hand-written versions they replaced, checked against those formulas and known values."""

from __future__ import annotations

import math
import random
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mhc_bench.report import depth as dep
from mhc_bench.report.stats import difference, estimate, t975, wilson

# The table the report used before scipy (two-sided 95 %, df = 1..30), to 3 decimals.
OLD_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)


def test_t_quantiles_match_the_former_table() -> None:
    for df, value in enumerate(OLD_T975, start=1):
        assert t975(df) == pytest.approx(value, abs=6e-4)
        assert t975(df + 0.7) == t975(df)  # Welch's fractional df is rounded down, as before
    assert math.isnan(t975(0)) and math.isnan(t975(math.nan))


def _old_wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def test_wilson_matches_the_closed_form() -> None:
    for n in (1, 2, 3, 5, 17):
        for k in range(n + 1):
            low, high = wilson(k, n)
            old_low, old_high = _old_wilson(k, n)
            assert low == pytest.approx(old_low, abs=1e-9) and high == pytest.approx(old_high, abs=1e-9)
            assert 0.0 <= low <= k / n <= high <= 1.0
    assert wilson(0, 3)[0] == 0.0 and wilson(3, 3)[1] == 1.0


def test_estimates_keep_their_values() -> None:
    est = estimate([4.0, 5.0, 9.0])
    sd = math.sqrt(((4 - 6) ** 2 + (5 - 6) ** 2 + (9 - 6) ** 2) / 2)
    assert est.mean == 6.0 and est.half == pytest.approx(4.303 * sd / math.sqrt(3), rel=2e-4)
    welch = difference({0: 1.0, 1: 2.0, 2: 3.5}, {5: 0.0, 6: 0.4})
    assert welch.mean == pytest.approx(2.1666667 - 0.2) and welch.half is not None and welch.half > 0


def _old_fit(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """The hand-written least squares the report used before ``scipy.stats.linregress``."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    intercept = my - slope * mx
    sse = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    return slope, intercept, t975(n - 2) * math.sqrt(sse / (n - 2) / sxx)


def test_growth_fit_matches_the_hand_written_least_squares() -> None:
    rng = random.Random(3)
    rows = []
    for blocks in (1, 2, 4, 8):
        for seed in range(3):
            gain = 1.1 ** (2 * blocks) * math.exp(rng.gauss(0, 0.2))
            rows.append({"variant": "hc", "n_layer": blocks, "residual_layers": 2 * blocks, "seed": seed,
                         "status": "completed", "max_composite_fwd": gain, "max_composite_bwd": gain / 2})
    frame = pd.DataFrame(rows)
    fit = dep.fit_growth(frame, "max")
    assert fit is not None and fit.points == 12 and fit.depths == (2, 4, 8, 16)
    slope, intercept, half = _old_fit([float(r["residual_layers"]) for r in rows],
                                      [math.log(r["max_composite_fwd"]) for r in rows])
    assert fit.slope == pytest.approx(slope, rel=1e-12)
    assert fit.intercept == pytest.approx(intercept, rel=1e-12)
    assert fit.half == pytest.approx(half, rel=1e-9)
    two = dep.fit_growth(frame[frame["n_layer"].isin([1, 2])].groupby("n_layer").head(1), "max")
    assert two is not None and two.points == 2 and two.half is None  # an exact line has no interval


_HOLD = """
import sys, time
from pathlib import Path
from mhc_bench.workflow.snakerun import project_lock
with project_lock("holder under test", Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(30)
"""


def test_the_run_lock_is_exclusive_across_processes(tmp_path: Path) -> None:
    from mhc_bench.errors import UserError
    from mhc_bench.workflow.snakerun import project_lock

    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match="holder under test"), project_lock("second", tmp_path):
            pass
    finally:
        holder.kill()
        holder.wait()
    with project_lock("after the holder died", tmp_path):  # the kernel released it
        pass
