"""Claim rules on synthetic summary frames: each rule is shown to give each verdict it can give.

Frames are built here row by row with only the columns the rules read (the product's frame
has these and more); the numbers are chosen so that the expected verdict follows by hand.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest

from mhc_bench.report import depth as dep
from mhc_bench.report import frontier as fr
from mhc_bench.report.aggregate import GroupKey, sorted_groups
from mhc_bench.report.perf_model import PerfModel, Prediction
from mhc_bench.report.rules import RULES, Evidence
from mhc_bench.report.stats import wilson

C3 = {"variant": "hc", "reference": "mhc", "factor": 1.5, "min_abs": 1.5, "target": 3000.0}
C4 = {"variant": "hc", "reference": "mhc", "min_fraction": 0.5, "blowup_gain": 10.0}


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Summary-frame rows: defaults for what a row leaves out (a completed main cell at d64-b2)."""
    base = {"n": 4, "d_model": 64, "n_layer": 2, "maps": "res+pre+post", "lr": 1e-3, "grad_clip": 1.0,
            "mix_weight": 0.0, "steps": 100, "has_metrics": True, "status": "completed",
            "experiments": "main"}
    out = []
    for i, r in enumerate(rows):
        row = {**base, "cell_id": f"c{i:03d}", **r}
        if row["variant"] == "baseline":
            row["n"], row["maps"] = 1, "-"
        row["scale"] = f"d{row['d_model']}-b{row['n_layer']}"
        row["residual_layers"] = 2 * row["n_layer"]
        out.append(row)
    return pd.DataFrame(out)


def judge(rule: str, rows: list[dict[str, Any]], **params: Any) -> Any:
    return RULES[rule](Evidence(frame(rows)), **params)


# --- C1 / C2: every mHC cell -------------------------------------------------------------


def test_single_gain_rule_both_ways() -> None:
    ok = [{"variant": "mhc", "seed": s, "max_single_fwd": 1.0, "max_single_bwd": 1.02} for s in range(2)]
    out = judge("single_gain_within", ok, variant="mhc", low=0.9, high=1.1)
    assert out.verdict == "reproduced" and out.reason.startswith("experiment main at d64-b2 (n=4, 2 seeds)")
    depth_cell = {"variant": "mhc", "seed": 0, "n_layer": 8, "experiments": "depth", "max_single_fwd": 1.3,
                  "max_single_bwd": 1.0}
    out = judge("single_gain_within", [*ok, depth_cell], variant="mhc", low=0.9, high=1.1)
    assert out.verdict == "not reproduced" and "c002" in out.reason  # the depth cell counts too
    assert "experiments main+depth at d64-b2/d64-b8" in out.reason


def test_composite_bound_rule_both_ways() -> None:
    rows = [{"variant": "mhc", "seed": 0, "max_composite_fwd": 1.4, "max_composite_bwd": 1.2,
             "min_composite_min_col": 0.9}]
    assert judge("composite_gain_bounded", rows, variant="mhc", ceiling=2.0).verdict == "reproduced"
    rows[0]["max_composite_bwd"] = 2.5
    out = judge("composite_gain_bounded", rows, variant="mhc", ceiling=2.0)
    assert out.verdict == "not reproduced" and "worst cell c000" in out.reason


def test_gain_rules_say_when_only_unclipped_cells_fail() -> None:
    """A failure confined to cells trained without clipping (the frontier's stress test) is said so,
    with the clipped cells' range; a clipped failing cell gets no such note."""
    clipped = {"variant": "mhc", "seed": 0, "max_composite_fwd": 1.1, "max_composite_bwd": 1.0,
               "max_single_fwd": 1.0, "max_single_bwd": 1.0, "min_composite_min_col": 0.99}
    stressed = {**clipped, "seed": 1, "lr": 1.0, "grad_clip": 0.0, "experiments": "frontier",
                "max_composite_bwd": 2.5, "max_single_bwd": 1.6, "min_composite_min_col": 0.43}
    c2 = judge("composite_gain_bounded", [clipped, stressed], variant="mhc", ceiling=2.0)
    assert c2.verdict == "not reproduced" and "exceeds 2.0 in 1 of 2 cells" in c2.reason
    assert "without gradient clipping at lr 1 (min column sum of their composite maps 0.430" in c2.reason
    assert c2.reason.endswith("the cells trained with clipping: max 1.100 (within)")
    c1 = judge("single_gain_within", [clipped, stressed], variant="mhc", low=0.9, high=1.1)
    assert c1.reason.endswith("the cells trained with clipping: 1.000-1.000 (within)")
    both = judge("composite_gain_bounded", [{**clipped, "max_composite_fwd": 3.0}, stressed], variant="mhc",
                 ceiling=2.0)
    assert both.verdict == "not reproduced" and "without gradient clipping" not in both.reason


# --- C3: main + depth ---------------------------------------------------------------------


def main_cells(hc_gain: float = 8.0, mhc_gain: float = 1.0) -> list[dict[str, Any]]:
    return [{"variant": v, "seed": s, "max_composite_fwd": g, "max_composite_bwd": g}
            for v, g in (("hc", hc_gain), ("mhc", mhc_gain)) for s in range(2)]


def depth_cells(hc_factor: float, seeds: int = 2, noise: float = 0.02, mhc: float = 1.0,
                blocks: tuple[int, ...] = (1, 2, 4, 8)) -> list[dict[str, Any]]:
    """HC's gain = 1.1 x factor^L (times a seed-dependent wobble); mHC's constant."""
    rows = []
    for b in blocks:
        for s in range(seeds):
            wobble = 1 + noise * (s - (seeds - 1) / 2) * (1 if b % 2 else -1)
            g = 1.1 * hc_factor ** (2 * b) * wobble
            rows.append({"variant": "hc", "seed": s, "d_model": 32, "n_layer": b, "experiments": "depth",
                         "max_composite_fwd": g, "max_composite_bwd": g / 2})
            rows.append({"variant": "mhc", "seed": s, "d_model": 32, "n_layer": b, "experiments": "depth",
                         "max_composite_fwd": mhc, "max_composite_bwd": mhc})
    return rows


def test_depth_fit_recovers_a_known_growth_rate() -> None:
    rows = frame(depth_cells(1.2, noise=0.0))
    hc = rows[rows["variant"] == "hc"]
    fit = dep.fit_growth(hc, "max")
    assert fit is not None and fit.factor == pytest.approx(1.2) and fit.half == pytest.approx(0.0, abs=1e-7)
    assert fit.points == 8 and fit.depths == (2, 4, 8, 16)
    # log(1.1) + L log(1.2) = log(3000)
    assert fit.reaches(3000.0) == pytest.approx((math.log(3000) - math.log(1.1)) / math.log(1.2))
    flat = dep.fit_growth(rows[rows["variant"] == "mhc"], "max")
    assert flat is not None and flat.factor == pytest.approx(1.0) and flat.reaches(3000.0) is None
    assert dep.fit_growth(hc[hc["n_layer"] == 2], "max") is None  # one depth: no fit
    # a diverged cell is left out of the fit (its final gain is not a trained model's)
    blown = frame([*depth_cells(1.2, noise=0.0), {"variant": "hc", "seed": 9, "d_model": 32, "n_layer": 8,
                   "experiments": "depth", "status": "diverged", "max_composite_fwd": 1e9}])
    assert dep.fit_growth(blown[blown["variant"] == "hc"], "max").factor == pytest.approx(1.2)


def test_c3_reproduced_when_hc_exceeds_and_grows() -> None:
    out = judge("composite_gain_grows", main_cells() + depth_cells(1.2), **C3)
    assert out.verdict == "reproduced", out.reason
    assert "depth experiment at n=4, d_model 32, L=2/4/8/16 (2 seeds)" in out.reason
    assert "per-layer growth's 95 % CI above 1" in out.reason and "mhc x1.000/layer" in out.reason
    assert "(extrapolation)" in out.value and "hc x1.2" in out.value


def test_c3_not_reproduced_when_the_gain_shrinks_with_depth() -> None:
    out = judge("composite_gain_grows", main_cells() + depth_cells(0.9), **C3)
    assert out.verdict == "not reproduced" and "CI below 1" in out.reason
    assert "fit never reaches 3000 (no growth)" in out.value


def test_c3_not_reproduced_when_hc_does_not_exceed_mhc_on_main() -> None:
    out = judge("composite_gain_grows", main_cells(hc_gain=1.2) + depth_cells(1.2), **C3)
    assert out.verdict == "not reproduced" and "stays below 1.5 x mhc" in out.reason


def test_c3_inconclusive_when_the_growth_ci_includes_one() -> None:
    out = judge("composite_gain_grows", main_cells() + depth_cells(1.005, noise=0.3), **C3)
    assert out.verdict == "inconclusive" and "CI includes 1" in out.reason


def test_c3_without_a_depth_experiment_says_so() -> None:
    out = judge("composite_gain_grows", main_cells(), **C3)
    assert out.verdict == "inconclusive"
    assert "this profile runs no depth experiment, so growth with depth is untested" in out.reason
    out = judge("composite_gain_grows", depth_cells(1.2), **C3)
    assert out.verdict == "inconclusive" and "this profile runs no main experiment" in out.reason


# --- C4: stability frontier ----------------------------------------------------------------


def sweep(diverged: dict[str, dict[float, int]], seeds: int = 2, clip: float = 0.0) -> list[dict[str, Any]]:
    """Frontier cells: ``diverged[variant][lr]`` = how many of the seeds diverged there."""
    rows = []
    for variant, per_lr in diverged.items():
        for lr, k in per_lr.items():
            for s in range(seeds):
                bad = s < k
                rows.append({"variant": variant, "seed": s, "lr": lr, "grad_clip": clip,
                             "experiments": "frontier", "status": "diverged" if bad else "completed",
                             "diverged_step": 30 if bad else math.nan, "spike_count": 2 if bad else 0,
                             "steps_done": 30 if bad else 100})
    return rows


LRS = (1e-3, 1e-2, 1e-1)


def test_c4_reproduced_when_hc_breaks_below_mhc() -> None:
    rows = sweep({"baseline": dict.fromkeys(LRS, 0) | {1e-1: 2}, "hc": {1e-3: 0, 1e-2: 2, 1e-1: 2},
                  "mhc": {1e-3: 0, 1e-2: 0, 1e-1: 1}})
    out = judge("stability_frontier", rows, **C4)
    assert out.verdict == "reproduced", out.reason
    assert "largest stable lr hc 0.001, mhc 0.01" in out.value
    assert "hc diverged in 2/2 seeds at lr 0.01, where mhc diverged in no seed" in out.reason
    assert out.reason.startswith("frontier experiment at d64-b2 n=4, lr 0.001-0.1 (2 seeds)")


def test_c4_not_reproduced_when_mhc_breaks_first() -> None:
    rows = sweep({"hc": {1e-3: 0, 1e-2: 0, 1e-1: 2}, "mhc": {1e-3: 0, 1e-2: 1, 1e-1: 2}})
    out = judge("stability_frontier", rows, **C4)
    assert out.verdict == "not reproduced" and "mhc diverges first (1/2 seeds at lr 0.01)" in out.reason


def test_c4_inconclusive_when_the_sweep_never_reaches_instability() -> None:
    rows = sweep({v: dict.fromkeys(LRS, 0) for v in ("baseline", "hc", "mhc")})
    out = judge("stability_frontier", rows, **C4)
    assert out.verdict == "inconclusive"
    assert "the sweep did not reach instability: no seed of any variant diverged at lr up to 0.1" \
        in out.reason
    assert ">= 0.1 (no seed diverged in the sweep)" in out.value


def test_c4_inconclusive_when_frontiers_tie_or_too_few_seeds_diverge() -> None:
    tie = sweep({"hc": {1e-3: 0, 1e-2: 2}, "mhc": {1e-3: 0, 1e-2: 1}})
    out = judge("stability_frontier", tie, **C4)
    assert out.verdict == "inconclusive" and "both first diverge at lr 0.01" in out.reason
    few = sweep({"hc": {1e-3: 0, 1e-2: 1}, "mhc": {1e-3: 0, 1e-2: 0}}, seeds=3)
    out = judge("stability_frontier", few, **C4)
    assert out.verdict == "inconclusive" and "only 1/3 seeds" in out.reason


def test_c4_names_missing_experiment_and_clipping() -> None:
    out = judge("stability_frontier", main_cells(), **C4)
    assert (out.verdict, out.reason) == ("inconclusive", "this profile runs no frontier experiment")
    clipped = sweep({"hc": {1e-3: 0, 1e-2: 2}, "mhc": {1e-3: 0, 1e-2: 0}}, clip=1.0)
    assert "(with gradient clipping 1)" in judge("stability_frontier", clipped, **C4).reason


def test_frontier_is_the_top_of_the_stable_range() -> None:
    def point(lr: float, k: int) -> fr.LrPoint:
        return fr.LrPoint(lr, 2, k, (), (), (), (0.0,), ())

    front = fr.frontier([point(1e-3, 0), point(1e-2, 1), point(1e-1, 0)])  # non-monotone: first break counts
    assert front is not None and front.stable_lr == 1e-3 and front.text() == "0.001"
    below = fr.frontier([point(1e-3, 2), point(1e-2, 2)])
    assert below is not None and below.stable_lr is None and below.rank == -math.inf
    assert "below the sweep" in below.text()


def test_first_blowup_layer_walks_the_probes_in_order() -> None:
    history = [{"step": 20, "single_fwd": [1.5, 1.2, 1.0]}, {"step": 10, "single_fwd": [1.0, 1.0, 1.0]},
               {"step": 30, "single_fwd": [4.0, 12.0, 50.0]}, {"step": 40, "single_fwd": [None, None, None]}]
    found = fr.first_blowup(history, None, threshold=10.0)
    assert found == fr.Blowup(1, 30) and found.text() == "layer 1 @ 30"
    assert fr.first_blowup(history, None, threshold=100.0) == fr.Blowup(None, 40)  # a NaN model: "all"
    assert fr.first_blowup(history, None, threshold=100.0).text() == "all layers non-finite @ 40"
    partial = [{"step": 5, "single_fwd": [2.0, None, 1.0]}]
    assert fr.first_blowup(partial, None, threshold=10.0) == fr.Blowup(1, 5)  # a non-finite layer counts
    final = {"single_fwd": [1.0, 11.0]}
    assert fr.first_blowup([], final, threshold=10.0, final_step=100) == fr.Blowup(1, 100)
    assert fr.first_blowup(history[:2], {"single_fwd": [1.0]}, threshold=10.0) is None


# --- C5-C8: loss gaps and scores on their experiments ----------------------------------------


def test_loss_gap_rule_reads_only_its_experiment() -> None:
    base = [{"variant": "baseline", "seed": s, "final_val_loss": 3.0 + 0.01 * s} for s in range(3)]
    better = [{"variant": "mhc", "seed": s, "final_val_loss": 2.95 + 0.01 * s} for s in range(3)]
    worse_elsewhere = [{"variant": "mhc", "seed": s, "lr": 1e-2, "experiments": "frontier",
                        "final_val_loss": 9.0} for s in range(3)]
    out = judge("loss_gap_negative", base + better + worse_elsewhere, variant="mhc", maps="res+pre+post")
    assert out.verdict == "reproduced" and "95 % CI [-0.0500, -0.0500] below 0" in out.reason
    assert out.reason.startswith("main experiment at d64-b2")
    out = judge("loss_gap_negative", [{**r, "experiments": "n_sweep"} for r in base + better],
                variant="mhc", maps="res+pre+post")
    assert (out.verdict, out.reason) == ("inconclusive", "this profile runs no main experiment")


def test_ablation_rule_judges_the_ablation_experiment_only() -> None:
    rows = [{"variant": "baseline", "seed": s, "final_val_loss": 3.0 + 0.001 * s} for s in range(3)]
    for maps, v in (("none", 3.0), ("res", 2.97), ("res+pre", 2.965), ("res+pre+post", 2.96)):
        rows += [{"variant": "hc", "maps": maps, "seed": s, "experiments": "ablation",
                  "final_val_loss": v + 0.001 * s} for s in range(3)]
    params = {"variant": "hc", "order": ["none", "res", "res+pre", "res+pre+post"], "res_share": 0.5}
    out = judge("ablation_order", rows, **params)
    assert out.verdict == "reproduced" and out.reason.startswith("ablation experiment at d64-b2")
    moved = [{**r, "experiments": "main"} for r in rows]
    assert judge("ablation_order", moved, **params).reason == "this profile runs no ablation experiment"
    # H_res gives too small a share of the gain: not reproduced
    for r in rows:
        if r.get("maps") == "res":
            r["final_val_loss"] = 2.999 + 0.001 * r["seed"]
    out = judge("ablation_order", rows, **params)
    assert out.verdict == "not reproduced" and "H_res gives only" in out.reason


def test_n_rule_on_the_n_sweep_both_ways() -> None:
    def rows(gaps: dict[int, float]) -> list[dict[str, Any]]:
        out = [{"variant": "baseline", "seed": s, "final_val_loss": 3.0, "experiments": "main+n_sweep"}
               for s in range(3)]
        out += [{"variant": "mhc", "n": n, "seed": s, "experiments": "n_sweep", "final_val_loss": 3.0 + g
                 + 0.001 * s} for n, g in gaps.items() for s in range(3)]
        return out

    out = judge("gap_improves_with_n", rows({2: -0.01, 4: -0.02, 8: -0.025}), variant="mhc",
                maps="res+pre+post")
    assert out.verdict == "reproduced" and out.reason.startswith("n_sweep experiment at d64-b2 (n=2/4/8")
    out = judge("gap_improves_with_n", rows({2: -0.03, 4: -0.02, 8: 0.0}), variant="mhc", maps="res+pre+post")
    assert out.verdict == "not reproduced" and "n=4 is worse than n=2 beyond seed noise" in out.reason


def scores(experiment: str, mix: float, mhc: float, hc: float = 0.40, base: float = 0.35,
           chance: float = 0.25) -> list[dict[str, Any]]:
    out = []
    for variant, score in (("baseline", base), ("hc", hc), ("mhc", mhc)):
        out += [{"variant": variant, "seed": s, "experiments": experiment, "mix_weight": mix,
                 "eval.qa": score + 0.002 * s, "eval.qa.chance": chance, "eval.qa.stderr": 0.01}
                for s in range(3)]
    return out


C8 = {"variant": "mhc", "baseline": "baseline", "rival": "hc", "maps": "res+pre+post", "chance_tol": 0.0}


def test_downstream_rule_prefers_the_downstream_experiment() -> None:
    # main: everything at chance; downstream (mixed data): mHC ahead beyond CI
    rows = scores("main", 0.0, 0.25, 0.25, 0.25) + scores("downstream", 0.1, 0.45)
    out = judge("downstream_beats", rows, **C8)
    assert out.verdict == "reproduced", out.reason
    assert out.reason.startswith("downstream experiment at d64-b2")
    assert "these scores left chance" in out.reason and "mhc n=4 d64-b2 mix=0.1" in out.reason
    out = judge("downstream_beats", scores("downstream", 0.1, 0.30), **C8)  # behind the baseline beyond CI
    assert out.verdict == "not reproduced" and "below baseline beyond CI" in out.reason


def test_downstream_rule_falls_back_to_main_and_says_so() -> None:
    out = judge("downstream_beats", scores("main", 0.0, 0.25, 0.25, 0.25), **C8)
    assert out.verdict == "inconclusive"
    assert "this profile runs no downstream experiment: judged on main's scores" in out.reason
    assert "no task left chance" in out.reason
    out = judge("downstream_beats", scores("main", 0.0, 0.45), **C8)
    assert out.verdict == "reproduced" and "judged on main's scores" in out.reason


# --- C9: GPU only; the performance model is shown, never judged ------------------------------


def test_overhead_rule_shows_predictions_but_never_judges_them() -> None:
    bench = {"rows": [{"variant": "mhc", "n": 4, "d_model": 256, "path": "torch", "ratio_to_baseline": 1.4}],
             "hardware": {"device": "cpu"}}
    params = {"variant": "mhc", "n": 4, "paper_ratio": 1.067, "tolerance": 0.05, "fused_paths": ["triton"]}
    model = PerfModel("results/kernels/model.json", (Prediction("H100", "d4096 n4", 1.05),))
    out = RULES["overhead_ratio"](Evidence(frame([]), bench=bench, perf_model=model), **params)
    assert out.verdict == "inconclusive" and out.reason.startswith("needs a GPU")
    assert "predicted, not measured (results/kernels/model.json): H100 d4096 n4: 1.050 (+5.0%)" \
        in out.reason
    absent = PerfModel("results/kernels/model.json", note="no performance model (... absent)")
    out = RULES["overhead_ratio"](Evidence(frame([]), bench=bench, perf_model=absent), **params)
    assert "no performance model" in out.reason and "predicted, not" not in out.reason
    gpu = {"rows": [{"variant": "mhc", "n": 4, "d_model": 1024, "path": "triton", "ratio_to_baseline": 1.3}],
           "hardware": {"device": "cuda", "gpu": "H100"}}
    out = RULES["overhead_ratio"](Evidence(frame([]), bench=gpu, perf_model=model), **params)
    assert out.verdict == "not reproduced"  # measured 1.3 decides, not the predicted 1.05


# --- named keys, statistics --------------------------------------------------------------------


def test_group_keys_are_named_and_separate_clipping_and_mixing() -> None:
    rows = frame([{"variant": "hc", "seed": 0}, {"variant": "hc", "seed": 1},
                  {"variant": "hc", "seed": 0, "grad_clip": 0.0, "experiments": "frontier"},
                  {"variant": "hc", "seed": 0, "mix_weight": 0.1, "experiments": "downstream"}])
    keys = [k for k, _ in sorted_groups(rows)]
    assert all(isinstance(k, GroupKey) for k in keys) and len(keys) == 3
    assert [(k.grad_clip, k.mix_weight) for k in keys] == [(0.0, 0.0), (1.0, 0.0), (1.0, 0.1)]
    assert keys[1].variant == "hc" and keys[1].scale == "d64-b2"


def test_wilson_interval() -> None:
    low, high = wilson(0, 3)
    assert low == 0.0 and high == pytest.approx(0.5615, abs=1e-3)
    low, high = wilson(3, 3)
    assert high == 1.0 and low == pytest.approx(0.4385, abs=1e-3)
    assert all(math.isnan(v) for v in wilson(0, 0))
