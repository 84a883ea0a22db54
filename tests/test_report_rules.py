"""Claim rules on synthetic summary frames: each rule is shown to give each verdict it can give.

Frames are built here row by row with only the columns the rules read (the product's frame
has these and more); the numbers are chosen so that the expected verdict follows by hand.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd
import pytest

from mhc_bench.report import depth as dep
from mhc_bench.report import frontier as fr
from mhc_bench.report.aggregate import GroupKey, sorted_groups
from mhc_bench.report.perf_model import Band, PerfModel, Prediction
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


# --- C1 / C2: mHC cells trained with the recipe; X1: the others -------------------------------


def test_single_gain_rule_judges_the_backward_gain_of_recipe_cells() -> None:
    ok = [{"variant": "mhc", "seed": s, "max_single_fwd": 1.0, "max_single_bwd": 1.02} for s in range(2)]
    out = judge("single_gain_within", ok, variant="mhc", low=0.9, high=1.1)
    assert out.verdict == "reproduced" and out.reason.startswith("experiment main at d64-b2 (n=4, 2 seeds)")
    assert "forward 1 by construction" in out.value and "trained with the recipe" in out.reason
    depth_cell = {"variant": "mhc", "seed": 0, "n_layer": 8, "experiments": "depth", "max_single_fwd": 1.0,
                  "max_single_bwd": 1.3}
    out = judge("single_gain_within", [*ok, depth_cell], variant="mhc", low=0.9, high=1.1)
    assert out.verdict == "not reproduced" and "c002" in out.reason  # a recipe cell of another experiment
    # a forward gain off 1 is shown, never judged (it is 1 by construction in every real mHC cell)
    fwd_only = [{**ok[0], "max_single_fwd": 1.5}]
    assert judge("single_gain_within", fwd_only, variant="mhc", low=0.9, high=1.1).verdict == "reproduced"


def test_gain_rules_leave_off_recipe_cells_to_the_stress_finding() -> None:
    clipped = {"variant": "mhc", "seed": 0, "max_composite_fwd": 1.1, "max_composite_bwd": 1.0,
               "max_single_fwd": 1.0, "max_single_bwd": 1.0, "min_composite_min_col": 0.99}
    stressed = [{**clipped, "seed": s, "rerun": r, "lr": 1.0, "grad_clip": 0.0, "experiments": "frontier",
                 "max_composite_bwd": 2.5, "max_single_bwd": 1.6, "max_logit_span": 900.0,
                 "max_col_err": 0.6, "max_sinkhorn_iters_needed": 1500} for s in range(2) for r in (0, 1)]
    calm = {**clipped, "seed": 0, "lr": 0.1, "grad_clip": 0.0, "experiments": "frontier"}
    rows = [clipped, calm, *stressed]
    c2 = judge("composite_gain_bounded", rows, variant="mhc", ceiling=2.0)
    assert c2.verdict == "reproduced" and "5 off-recipe cell(s)" in c2.reason and "X1" in c2.reason
    c1 = judge("single_gain_within", rows, variant="mhc", low=0.9, high=1.1)
    assert c1.verdict == "reproduced"
    x1 = judge("projection_stress", rows, variant="mhc", high=1.1, ceiling=2.0)
    assert x1.verdict == "finding" and "the bound first fails at lr 1 (the recipe's lr is 0.001)" in x1.reason
    assert "lr 0.1: bound fails in 0/1 cells" in x1.value
    assert "lr 1: bound fails in 4/4 cells (2 numerical replicates), logit span 900.0" in x1.value
    assert "iterations to converge 1500" in x1.value
    alone = judge("projection_stress", [clipped], variant="mhc", high=1.1, ceiling=2.0)
    assert alone.verdict == "inconclusive"


def test_gain_rules_judge_the_method_as_published_not_a_knob_sweep() -> None:
    """A Sinkhorn-iteration sweep's 1-iteration cells break the bound by design (X2 studies them);
    C1, C2 and X1 are about mHC's 20 iterations and must not count them, but must say they exist."""
    published = {"variant": "mhc", "seed": 0, "knobs": "", "max_composite_fwd": 1.1, "max_composite_bwd": 1.0,
                 "max_single_fwd": 1.0, "max_single_bwd": 1.02}
    one_iter = {**published, "knobs": "sinkhorn_iters=1", "max_single_bwd": 1.34, "max_composite_bwd": 2.6,
                "experiments": "sinkhorn_iters"}
    one_iter_stressed = {**one_iter, "lr": 1.0, "grad_clip": 0.0, "experiments": "frontier"}
    rows = [published, one_iter, {**one_iter, "seed": 1}, one_iter_stressed]
    c1 = judge("single_gain_within", rows, variant="mhc", low=0.9, high=1.1)
    assert c1.verdict == "reproduced" and "in all 1 mhc cells" in c1.reason
    assert ("3 cell(s) with knobs off the method's defaults (sinkhorn_iters=1) are not judged here"
            in c1.reason)
    c2 = judge("composite_gain_bounded", rows, variant="mhc", ceiling=2.0)
    assert c2.verdict == "reproduced"
    x1 = judge("projection_stress", rows, variant="mhc", high=1.1, ceiling=2.0)
    assert x1.verdict == "inconclusive"  # the one stressed cell is a knob-sweep cell
    # without the filter's column (older frames) every cell is the method's
    assert judge("single_gain_within", [{k: v for k, v in one_iter.items() if k != "knobs"}],
                 variant="mhc", low=0.9, high=1.1).verdict == "not reproduced"


def test_composite_bound_rule_both_ways() -> None:
    rows = [{"variant": "mhc", "seed": 0, "max_composite_fwd": 1.4, "max_composite_bwd": 1.2,
             "min_composite_min_col": 0.9}]
    assert judge("composite_gain_bounded", rows, variant="mhc", ceiling=2.0).verdict == "reproduced"
    rows[0]["max_composite_bwd"] = 2.5
    out = judge("composite_gain_bounded", rows, variant="mhc", ceiling=2.0)
    assert out.verdict == "not reproduced" and "worst c000" in out.reason


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


# --- C4: training failures (divergence, loss spikes), never gain readings ------------------------


def sweep(failed: dict[str, dict[float, int]], seeds: int = 2, clip: float = 0.0,
          how: str = "diverged") -> list[dict[str, Any]]:
    """Frontier cells: ``failed[variant][lr]`` = how many seeds failed there (``how``: diverged, spiked or
    stopped, the last being the gain ceiling: censored, not a failure)."""
    rows = []
    for variant, per_lr in failed.items():
        for lr, k in per_lr.items():
            for s in range(seeds):
                bad = s < k
                status = how if bad and how in ("diverged", "stopped") else "completed"
                rows.append({"variant": variant, "seed": s, "lr": lr, "grad_clip": clip,
                             "experiments": "frontier", "status": status,
                             "stopped_step": 30 if status != "completed" else math.nan,
                             "spike_count": 2 if bad and how == "spiked" else 0,
                             "steps_done": 30 if status != "completed" else 100})
    return rows


LRS = (1e-3, 1e-2, 1e-1)


@pytest.mark.parametrize("how", ["diverged", "spiked"])
def test_c4_reproduced_when_hc_fails_where_mhc_does_not(how: str) -> None:
    rows = sweep({"baseline": dict.fromkeys(LRS, 0), "hc": {1e-3: 0, 1e-2: 2, 1e-1: 2},
                  "mhc": {1e-3: 0, 1e-2: 0, 1e-1: 1}}, how=how)
    out = judge("training_instability", rows, **C4)
    assert out.verdict == "reproduced", out.reason
    assert "hc failed in 2/2 seeds at lr 0.01, where mhc failed in none" in out.reason
    assert out.reason.startswith("frontier experiment at d64-b2 n=4, lr 0.001-0.1 (no clipping)")


def test_c4_not_reproduced_when_mhc_fails_where_hc_does_not() -> None:
    rows = sweep({"hc": {1e-3: 0, 1e-2: 0, 1e-1: 2}, "mhc": {1e-3: 0, 1e-2: 2, 1e-1: 2}})
    out = judge("training_instability", rows, **C4)
    assert out.verdict == "not reproduced" and "mhc failed in 2/2 seeds at lr 0.01" in out.reason


def test_c4_a_gain_ceiling_stop_is_not_a_failure() -> None:
    """HC cells stopped by the gain ceiling are censored: with nothing else failing, C4 is inconclusive
    (counting them would make C4 restate C3: mHC's gain is bounded by construction)."""
    rows = sweep({"hc": {1e-3: 0, 1e-1: 2}, "mhc": {1e-3: 0, 1e-1: 0}}, how="stopped")
    out = judge("training_instability", rows, **C4)
    assert out.verdict == "inconclusive" and "nothing failed" in out.reason
    assert "2 stopped by the gain ceiling" in out.value


def test_c4_inconclusive_when_nothing_fails_or_both_fail_alike() -> None:
    calm = sweep({v: dict.fromkeys(LRS, 0) for v in ("baseline", "hc", "mhc")})
    out = judge("training_instability", calm, **C4)
    assert out.verdict == "inconclusive" and "did not reach instability" in out.reason
    alike = sweep({"hc": {1e-3: 0, 1e-2: 2}, "mhc": {1e-3: 0, 1e-2: 1}})
    assert judge("training_instability", alike, **C4).verdict == "inconclusive"
    few = sweep({"hc": {1e-3: 0, 1e-2: 1}, "mhc": {1e-3: 0, 1e-2: 0}}, seeds=3)
    out = judge("training_instability", few, **C4)
    assert out.verdict == "inconclusive" and "below 50%" in out.reason


def test_c4_names_a_missing_experiment() -> None:
    out = judge("training_instability", main_cells(), **C4)
    assert (out.verdict, out.reason) == ("inconclusive", "this profile runs no frontier experiment")


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


# --- C5-C7: loss gaps with the noise model (seeds + numerical replicates, MDE, degenerate) ---------

C5 = {"variant": "mhc", "maps": "res+pre+post", "paper_effect": -0.027, "collapse_spread": 2 ** -7}


def gap_cells(gap: float, seeds: int, wobble: float, experiment: str = "main", spread: float = 0.1,
              reruns: bool = False) -> list[dict[str, Any]]:
    """Baseline and mHC cells whose paired gap is ``gap`` plus a seed-alternating ``wobble``."""
    rows = []
    for s in range(seeds):
        for r in (0, 1) if reruns else (0,):
            sign = 1 if (s + r) % 2 else -1
            rows.append({"variant": "baseline", "seed": s, "rerun": r, "final_val_loss": 3.0,
                         "experiments": experiment})
            rows.append({"variant": "mhc", "seed": s, "rerun": r, "final_val_loss": 3.0 + gap + sign * wobble,
                         "experiments": experiment, "final_stream_spread": spread})
    return rows


def test_c5_reproduced_not_reproduced_and_underpowered() -> None:
    assert judge("loss_gap_negative", gap_cells(-0.05, 10, 0.005), **C5).verdict == "reproduced"
    assert judge("loss_gap_negative", gap_cells(+0.05, 10, 0.005), **C5).verdict == "not reproduced"
    out = judge("loss_gap_negative", gap_cells(-0.01, 3, 0.03), **C5)
    assert out.verdict == "underpowered" and "MDE" in out.reason and "seeds would settle it" in out.reason
    # powered, CI across 0 but excluding the paper's -0.027: no effect of its size
    out = judge("loss_gap_negative", gap_cells(0.0, 16, 0.004), **C5)
    assert out.verdict == "not reproduced" and "no effect of its size" in out.reason


def test_c5_counts_numerical_replicates_in_the_noise() -> None:
    out = judge("loss_gap_negative", gap_cells(-0.05, 4, 0.005, reruns=True), **C5)
    assert "numerical replicates" in out.reason and "8 gaps" in out.reason


def test_c5_degenerate_when_the_streams_collapsed() -> None:
    out = judge("loss_gap_negative", gap_cells(-0.05, 10, 0.005, spread=0.002), **C5)
    assert out.verdict == "degenerate" and "streams collapsed" in out.reason


def test_loss_gap_rule_reads_only_its_experiment() -> None:
    rows = gap_cells(-0.05, 10, 0.005) + [{"variant": "mhc", "seed": s, "lr": 1e-2, "experiments": "frontier",
                                           "final_val_loss": 9.0} for s in range(3)]
    out = judge("loss_gap_negative", rows, **C5)
    assert out.verdict == "reproduced" and out.reason.startswith("main experiment at d64-b2")
    moved = [{**r, "experiments": "n_sweep"} for r in gap_cells(-0.05, 3, 0.005)]
    assert judge("loss_gap_negative", moved, **C5).reason == "this profile runs no main experiment"


C6 = {"variant": "hc", "order": ["none", "res", "res+pre", "res+pre+post"], "res_share": 0.5,
      "paper_effect": -0.022, "collapse_spread": 2 ** -7}


def ablation_cells(res: float, seeds: int = 12, res_spread: float = 0.05) -> list[dict[str, Any]]:
    rows = [{"variant": "baseline", "seed": s, "final_val_loss": 3.0} for s in range(seeds)]
    for maps, v in (("none", 3.0), ("res", res), ("res+pre", 2.955), ("res+pre+post", 2.95)):
        rows += [{"variant": "hc", "maps": maps, "seed": s, "experiments": "ablation",
                  "final_stream_spread": 0.0 if maps == "none" else res_spread,
                  "final_val_loss": v + 0.002 * (1 if s % 2 else -1)} for s in range(seeds)]
    return rows


def test_c6_judges_res_against_none_with_the_noise_model() -> None:
    out = judge("ablation_order", ablation_cells(2.96), **C6)
    assert out.verdict == "reproduced", out.reason
    assert out.reason.startswith("ablation experiment at d64-b2")
    out = judge("ablation_order", ablation_cells(2.985), **C6)  # H_res gives 30 % of the gain
    assert out.verdict == "not reproduced" and "H_res gives only" in out.reason
    out = judge("ablation_order", ablation_cells(2.96, res_spread=1e-7), **C6)
    assert out.verdict == "degenerate" and "res: degenerate, streams collapsed" in out.reason
    moved = [{**r, "experiments": "main"} for r in ablation_cells(2.96)]
    assert judge("ablation_order", moved, **C6).reason == "this profile runs no ablation experiment"


def test_c7_judges_the_largest_n_against_the_smallest() -> None:
    def rows(gaps: dict[int, float], seeds: int = 12, spread: float = 0.05) -> list[dict[str, Any]]:
        out = [{"variant": "baseline", "seed": s, "final_val_loss": 3.0, "experiments": "main+n_sweep"}
               for s in range(seeds)]
        out += [{"variant": "mhc", "n": n, "seed": s, "experiments": "n_sweep", "final_stream_spread": spread,
                 "final_val_loss": 3.0 + g + 0.002 * (1 if s % 2 else -1)} for n, g in gaps.items()
                for s in range(seeds)]
        return out

    params = {"variant": "mhc", "maps": "res+pre+post", "paper_effect": -0.013, "collapse_spread": 2 ** -7}
    out = judge("gap_improves_with_n", rows({2: -0.01, 4: -0.02, 8: -0.03}), **params)
    assert out.verdict == "reproduced" and out.reason.startswith("n_sweep experiment at d64-b2 (n=2/4/8")
    assert "n=8 - n=2" in out.reason
    assert judge("gap_improves_with_n", rows({2: -0.03, 4: -0.02, 8: 0.0}), **params).verdict == \
        "not reproduced"
    out = judge("gap_improves_with_n", rows({2: -0.01, 8: -0.03}, spread=0.001), **params)
    assert out.verdict == "degenerate"


def test_noise_model_mde_matches_the_paired_t_power_formula() -> None:
    from mhc_bench.report import noise

    assert [round(noise.mde(0.018, s), 3) for s in (3, 5, 10, 16)] == [0.056, 0.030, 0.018, 0.013]
    assert noise.seeds_needed(0.018, -0.027) == 6
    assert noise.mde(0.018, 1) == math.inf and noise.seeds_needed(math.nan, 0.1) is None


def scores(experiment: str, mix: float, mhc: float, hc: float = 0.40, base: float = 0.35,
           chance: float = 0.25) -> list[dict[str, Any]]:
    out = []
    for variant, score in (("baseline", base), ("hc", hc), ("mhc", mhc)):
        out += [{"variant": variant, "seed": s, "experiments": experiment, "mix_weight": mix,
                 "eval.qa": score + 0.002 * s, "eval.qa.chance": chance, "eval.qa.stderr": 0.01}
                for s in range(3)]
    return out


C8 = {"variant": "mhc", "baseline": "baseline", "rival": "hc", "maps": "res+pre+post", "chance_tol": 0.0,
      "paper_effect": 0.044}


def test_downstream_rule_prefers_the_downstream_experiment() -> None:
    # main: everything at chance; downstream (mixed data): mHC ahead beyond CI
    rows = scores("main", 0.0, 0.25, 0.25, 0.25) + scores("downstream", 0.1, 0.45)
    out = judge("downstream_beats", rows, **C8)
    assert out.verdict == "reproduced", out.reason
    assert out.reason.startswith("downstream experiment at d64-b2")
    assert "these scores left chance" in out.reason and "mhc n=4 d64-b2 mix=0.1" in out.reason
    out = judge("downstream_beats", scores("downstream", 0.1, 0.30), **C8)  # behind the baseline beyond CI
    assert out.verdict == "not reproduced" and "opposite side of 0" in out.reason


def test_downstream_rule_ignores_tasks_only_below_chance() -> None:
    """Below chance beyond CI is a bias of the scoring (e.g. option length), not an ability: no signal."""
    out = judge("downstream_beats", scores("downstream", 0.1, 0.10, 0.12, 0.14), **C8)
    assert out.verdict == "inconclusive" and "no task left chance" in out.reason


def test_downstream_rule_without_signal_still_states_its_power() -> None:
    """All at chance: inconclusive, with the MDE of the accuracy gap next to the paper's +0.044, so a
    reader sees whether these seeds could have judged a gain of that size anywhere."""
    noisy = {"baseline": (0.01, -0.01, 0.0), "hc": (0.0, 0.0, 0.0), "mhc": (0.0, 0.03, -0.02)}
    rows = [{"variant": v, "seed": s, "experiments": "downstream", "mix_weight": 0.1,
             "eval.qa": 0.25 + d, "eval.qa.chance": 0.25, "eval.qa.stderr": 0.02}
            for v, ds in noisy.items() for s, d in enumerate(ds)]
    out = judge("downstream_beats", rows, **C8)
    assert out.verdict == "inconclusive" and "no task left chance" in out.summary
    found = re.search(r"MDE of the accuracy gap ([0-9.]+) vs the paper's \+0\.044: underpowered", out.summary)
    assert found, out.summary
    # 3 seeds of paired gaps with SD ~0.02-0.03 cannot detect 0.044 (t(.975,2) + t(.8,2) = 5.4)
    assert 0.044 < float(found.group(1)) < 0.2


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
    banded = PerfModel("results/kernels/model.json", (Prediction("H100", "d4096 n4", 1.36),),
                       band=(Band("H100", (("this project's kernels", 35.7), ("paper-like", 9.0))),),
                       band_assumptions=(("this project's kernels", "fp32 stream"), ("paper-like", "bf16")))
    out = RULES["overhead_ratio"](Evidence(frame([]), bench=bench, perf_model=banded), **params)
    assert out.verdict == "inconclusive" and "a band, not evidence: H100 +9.0 % to +35.7 %" in out.reason
    assert "paper-like: bf16" in out.reason
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
