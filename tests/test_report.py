"""Report: aggregation, MLflow cross-check, tables, claims verdicts, plots, determinism.

A results folder with chosen numbers is generated in tmp (2 seeds x baseline/HC/mHC
at n=4, a diverged HC cell, an mHC ablation set, a cell trained but not evaluated,
a cell never trained, bench.json and a real SQLite MLflow store missing one run and
holding one orphan run); the assertions follow from those numbers.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

from cell_records import cell_config, eval_record, metrics_record, write_cell

from mhc_bench import cellfolder as cf
from mhc_bench.report import tables
from mhc_bench.report.build import build_report
from mhc_bench.report.rules import RULES, Evidence
from mhc_bench.report.stats import difference, estimate, t975

PROFILE = "quick"
PNG = b"\x89PNG\r\n\x1a\n"
# suite -> (metric, chance); the generation task has no chance level
TASKS = {"mmlu_style": ("acc", 0.25), "gsm8k_style": ("exact_match", None)}

# name -> (variant, n, seed, maps, metrics overrides, eval scores or None / "skip")
CELLS: dict[str, tuple[str, int, int, list[str], dict[str, Any], Any]] = {
    "base0": ("baseline", 1, 0, ["res", "pre", "post"], {"final_val_loss": 3.00, "step_time_ms": 10.0},
              {"mmlu_style": 0.25}),
    "base1": ("baseline", 1, 1, ["res", "pre", "post"], {"final_val_loss": 3.02, "step_time_ms": 10.4},
              {"mmlu_style": 0.26}),
    "hc0": ("hc", 4, 0, ["res", "pre", "post"],
            {"final_val_loss": 2.99, "step_time_ms": 12.0, "max_single_fwd": 1.8, "max_single_bwd": 1.6,
             "max_composite_fwd": 8.0, "max_composite_bwd": 6.0, "layer0_fwd": 3.0, "max_prefix_fwd": 7.0},
            {"mmlu_style": 0.245}),
    "hc1": ("hc", 4, 1, ["res", "pre", "post"],
            {"status": "diverged", "stopped_step": 40, "stop_reason": "non-finite loss",
             "final_val_loss": None, "final_train_loss": None, "step_time_ms": 12.4, "steps_done": 40,
             "max_single_fwd": 40.0, "max_single_bwd": 30.0, "max_composite_fwd": 5.0e6,
             "max_composite_bwd": 2.0e6, "layer0_fwd": 900.0, "max_prefix_fwd": 4.0e6, "spike_count": 2},
            "skip"),
    "mhc0": ("mhc", 4, 0, ["res", "pre", "post"],
             {"final_val_loss": 2.98, "step_time_ms": 13.0, "max_composite_fwd": 1.3}, {"mmlu_style": 0.255}),
    "mhc1": ("mhc", 4, 1, ["res", "pre", "post"],
             {"final_val_loss": 3.03, "step_time_ms": 13.4, "max_composite_fwd": 1.35}, {"mmlu_style": 0.25}),
    "none0": ("mhc", 4, 0, [], {"final_val_loss": 3.01}, {"mmlu_style": 0.25}),
    "res0": ("mhc", 4, 0, ["res"], {"final_val_loss": 2.995}, {"mmlu_style": 0.25}),
    "respre0": ("mhc", 4, 0, ["pre", "res"], {"final_val_loss": 2.99}, None),  # no eval.json
    "untrained": ("mhc", 2, 0, ["res", "pre", "post"], {}, None),  # never trained
}
UNTRAINED, NO_RUN = "untrained", "base1"
# The profile's experiments each cell serves (labels only: cell ids do not change). No depth,
# frontier or downstream experiment here: those claims must say the profile runs none
# (tests/test_report_experiments.py builds them).
SERVES = {"none0": ["ablation"], "res0": ["ablation"], "respre0": ["main", "ablation"],
          "mhc0": ["main", "ablation"], "mhc1": ["main", "ablation"], UNTRAINED: ["n_sweep"]}
ORPHAN = "hc-n4-d64-b2-s9-ffffff"
# Groups: baseline; hc n4; mhc n2; mhc n4 x {none, res, res+pre, res+pre+post}.
N_GROUPS = 7


def cell_ids() -> dict[str, str]:
    """name -> cell id (ids are the trainer's: readable part + config hash)."""
    from mhc_bench.cellconfig import cell_id

    return {name: cell_id(cell_config(v, n, seed, maps)) for name, (v, n, seed, maps, _, _) in CELLS.items()}


def serves(name: str) -> list[str]:
    return SERVES.get(name, ["main"])


IDS = cell_ids()


def _history(metrics: Any) -> list[dict[str, Any]]:
    last = metrics.stopped_step or 100
    out = []
    for step in range(0, last + 1, 20):
        frac = step / 100
        grad = 50.0 if metrics.status == "diverged" and step == last else 1.0 + 0.1 * frac
        out.append({"step": step, "train_loss": 6.0 - 3.0 * frac,
                    "val_loss": None if step % 40 else 6.1 - 3 * frac,
                    "max_composite_fwd": metrics.max_composite_fwd * (0.5 + 0.5 * frac),
                    "max_composite_bwd": metrics.max_composite_bwd, "layer0_fwd": metrics.layer0_fwd,
                    "grad_norm": grad, "grad_norm_maps": 0.1, "probe_version": metrics.probe_version})
    return out


def make_results(root: Path, with_mlflow: bool = True) -> Path:
    """Write the profile results under ``root/quick`` through the product's writers."""
    res = root / PROFILE
    res.mkdir(parents=True)
    uri = f"sqlite:///{res / 'mlflow.db'}"
    client = exp_id = None
    if with_mlflow:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        exp_id = client.create_experiment(PROFILE)
        orphan = client.create_run(exp_id, run_name=ORPHAN)
        client.set_terminated(orphan.info.run_id)
    for name, (variant, n, seed, maps, over, scores) in CELLS.items():
        cfg = cell_config(variant, n, seed, maps, tracking_uri=uri, experiments=serves(name))
        cid = IDS[name]
        run_id = None
        if client is not None and name != NO_RUN:
            run_id = client.create_run(exp_id, run_name=cid).info.run_id
        if name == UNTRAINED:
            write_cell(res / "cells", cfg, None, trained=False)
            continue
        metrics = metrics_record(cfg, **over, mlflow_run_id=run_id,
                                 mlflow_tracking_uri=uri if run_id else None)
        folder = write_cell(res / "cells", cfg, metrics, _history(metrics))
        if scores == "skip":
            cf.write_eval(folder, eval_record(cid, {}, status="skipped", reason="the cell diverged"))
        elif scores is not None:
            cf.write_eval(folder, eval_record(cid, {
                t: (metric, scores.get(t, 0.0), 0.02 if chance else 0.0, chance)
                for t, (metric, chance) in TASKS.items()}))
    bench = {
        "rows": [
            {"variant": "baseline", "n": 1, "d_model": 256, "path": "torch", "step_time_ms": 20.0,
             "tokens_per_s": 1000.0, "peak_mem_mb": 300.0, "ratio_to_baseline": 1.0},
            {"variant": "mhc", "n": 4, "d_model": 256, "path": "torch", "step_time_ms": 27.0,
             "tokens_per_s": 740.0, "peak_mem_mb": 420.0, "ratio_to_baseline": 1.35},
            {"variant": "mhc", "n": 4, "d_model": 256, "path": "compile", "step_time_ms": 24.0,
             "tokens_per_s": 830.0, "peak_mem_mb": 400.0, "ratio_to_baseline": 1.2},
        ],
        "hardware": {"device": "cpu", "cpu": "test-cpu x2"},
        "versions": {"torch": "2.13.0"},
    }
    (res / "bench").mkdir()
    (res / "bench" / "bench.json").write_text(json.dumps(bench))
    return res


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("results")
    res = make_results(root)
    return build_report(res, root / "report", PROFILE)


def _summary(built: dict[str, Any]) -> pd.DataFrame:
    return pd.read_csv(built["summary_csv"]).set_index("cell_id")


def test_summary_has_one_row_per_cell_with_grid_metrics_and_eval(built: dict[str, Any]) -> None:
    s = _summary(built)
    assert sorted(s.index) == sorted(IDS.values())
    row = s.loc[IDS["mhc0"]]
    assert (row["variant"], row["n"], row["scale"], row["seed"], row["maps"]) == (
        "mhc",
        4,
        "d64-b2",
        0,
        "res+pre+post",
    )
    assert row["lr"] == pytest.approx(1e-3) and row["final_val_loss"] == pytest.approx(2.98)
    assert row["eval.mmlu_style:acc"] == pytest.approx(0.255) and row["eval.mmlu_style:acc.chance"] == 0.25
    # map sets are labelled by list content, whatever the order in cell.yaml
    assert s.loc[IDS["none0"], "maps"] == "none"
    assert s.loc[IDS["respre0"], "maps"] == "res+pre"
    assert s.loc[IDS["hc1"], "status"] == "diverged"
    assert math.isnan(s.loc[IDS["hc1"], "final_val_loss"])
    assert not s.loc[IDS[UNTRAINED], "has_metrics"] and math.isnan(s.loc[IDS[UNTRAINED], "final_val_loss"])
    assert not s.loc[IDS[NO_RUN], "in_mlflow"] and s.loc[IDS["hc0"], "in_mlflow"]


def test_missing_and_mlflow_mismatches_are_listed(built: dict[str, Any]) -> None:
    found = {(p.cell_id, p.kind) for p in built["problems"]}
    assert (IDS[NO_RUN], "no MLflow run") in found
    assert (ORPHAN, "MLflow run without cell folder") in found
    assert (IDS["respre0"], "no eval.json") in found
    assert (IDS[UNTRAINED], "no metrics.json") in found
    assert (IDS["hc1"], "eval skipped") in found
    assert not any(k == "no MLflow run" and c != IDS[NO_RUN] for c, k in found)
    md = built["report_md"].read_text()
    missing = md.split("## Missing / inconsistent")[1].split("\n## ")[0]
    for cid in (IDS[NO_RUN], ORPHAN, IDS["respre0"], IDS[UNTRAINED]):
        assert cid in missing
    assert built["tracking"].status == "checked"


def test_every_table_lists_every_group(built: dict[str, Any]) -> None:
    frame = pd.read_csv(built["summary_csv"])
    frame["has_metrics"] = frame["has_metrics"].astype(bool)
    for make in (tables.overhead_table, tables.stability_table, tables.accuracy_table):
        assert len(make(frame).frame) == N_GROUPS, make.__name__
    # the ablation table holds the ablation experiment's groups only (mhc x 4 map sets)
    ablation = tables.ablation_table(frame).frame
    assert sorted(ablation["maps"]) == sorted(["none", "res", "res+pre", "res+pre+post"])
    assert set(ablation["rows"]) == {"extension (mHC)"}
    # groups of experiments that read scores (main), or with scores; not the never-trained n_sweep cell
    assert len(tables.downstream_table(frame).frame) == (N_GROUPS - 1) * len(TASKS)
    md = built["report_md"].read_text()
    for title in (
        "Verdict summary",
        "Claims in full",
        "Overhead (training cells)",
        "Overhead benchmark (bench.json)",
        "Stability",
        "Accuracy: validation loss",
        "Accuracy: downstream tasks",
        "Ablation",
    ):
        assert f"## {title}" in md
    assert f"# mHC reproduction report: {PROFILE}" in md and "test-cpu x2" in md and "torch 2.13.0" in md


def test_stability_counts_the_diverged_cell(built: dict[str, Any]) -> None:
    frame = pd.read_csv(built["summary_csv"])
    stab = tables.stability_table(frame).frame.set_index(["variant", "n", "maps"])
    hc = stab.loc[("hc", 4, "res+pre+post")]
    assert hc["diverged"] == "1/2 (step 40)"
    assert hc["max composite fwd"].endswith("5.00e+06]")  # the blown-up seed sets the max
    assert stab.loc[("mhc", 4, "res+pre+post"), "diverged"] == "0/2"
    assert stab.loc[("mhc", 2, "res+pre+post"), "cells"] == "0 of 1"


def test_accuracy_table_ci_and_single_seed(built: dict[str, Any]) -> None:
    frame = pd.read_csv(built["summary_csv"])
    acc = tables.accuracy_table(frame).frame.set_index(["variant", "n", "maps"])
    # two seeds 2.98, 3.03: mean 3.005, half width 12.706 * 0.025 = 0.318
    assert acc.loc[("mhc", 4, "res+pre+post"), "val loss"] == "3.005 ± 0.318 (n=2)"
    assert acc.loc[("mhc", 4, "none"), "val loss"] == "3.010 (n=1, no CI)"
    assert acc.loc[("baseline", 1, "-"), "gap vs baseline"] == "(reference)"


def test_claim_verdicts_follow_the_numbers(built: dict[str, Any]) -> None:
    card = {row["id"]: row for row in built["scorecard"]}
    # X2 and the V rows need a sinkhorn_iters experiment or other variants: not listed here
    assert [row["id"] for row in built["scorecard"]] == [*(f"C{i}" for i in range(1, 10)), "X1"]
    expected = {
        "C1": "reproduced",
        "C2": "reproduced",
        "C3": "inconclusive",  # HC > mHC on main, but no depth experiment
        "C4": "inconclusive",  # no frontier experiment
        "C5": "underpowered",  # 2 seeds: the MDE is far above the paper's 0.027
        "C6": "inconclusive",
        "C7": "inconclusive",
        "C8": "inconclusive",
        "C9": "inconclusive",
        "X1": "inconclusive",  # no mHC cell off the recipe
    }
    assert {k: v["verdict"] for k, v in card.items()} == expected
    assert "underpowered" in card["C5"]["reason"] and "seeds would settle it" in card["C5"]["reason"]
    assert "no signal" in card["C8"]["reason"]
    assert "no fused kernels" in card["C9"]["reason"]
    assert card["C4"]["reason"] == "this profile runs no frontier experiment"
    assert "main: hc max 5.00e+06 vs mhc max 1.350" in card["C3"]["reproduced_value"]
    assert card["C3"]["reason"].startswith("main experiment at d64-b2 (n=4, 2 seeds): hc >= 1.5 x mhc")
    assert "this profile runs no depth experiment" in card["C3"]["reason"]
    assert card["C5"]["reason"].startswith("main experiment at d64-b2 (n=1/4, 2 seeds)")
    assert "ablation experiment has no hc cells" in card["C6"]["reason"]
    assert card["C7"]["reason"] == "the n_sweep experiment has no trained cells yet"
    assert "downstream" in card["C8"]["reason"] and "judged on main's scores" in card["C8"]["reason"]
    assert "needs a GPU" in card["C9"]["reason"]
    assert "results/kernels/model.json absent" in card["C9"]["reason"]
    assert "d_model 64" in card["C1"]["scale_tested"] and "seeds 2" in card["C1"]["scale_tested"]
    rows = list(csv.DictReader(built["claims_csv"].open()))
    ids = [*(f"C{i}" for i in range(1, 10)), "X1"]
    assert [r["verdict"] for r in rows] == [card[c]["verdict"] for c in ids]
    assert json.loads(built["claims_json"].read_text())["claims"][1]["verdict"] == "reproduced"
    assert "[C3](#claim-c3)" in built["report_md"].read_text()


def test_plots_are_png_and_embedded(built: dict[str, Any]) -> None:
    names = {p.name for p in built["plots"]}
    assert names == {
        "composite_gain_per_layer.png",
        "stream_spread_per_layer.png",
        "gain_over_steps.png",
        "loss_curves.png",
        "grad_norm.png",
        "accuracy_by_n.png",
        "gain_vs_depth.png",
        "stability_frontier.png",
        "loss_gap_vs_n.png",
    }
    for p in built["plots"]:
        assert p.parent.name == "plots" and p.read_bytes()[:8] == PNG and p.stat().st_size > 2000
    page = built["report_html"].read_text()
    assert page.count("data:image/png;base64,") == 9 and "<table>" in page


def test_rerun_is_deterministic(built: dict[str, Any]) -> None:
    before = {k: built[k].read_bytes() for k in ("summary_csv", "claims_json", "report_md")}
    again = build_report(built["summary_csv"].parent, built["report_md"].parent, PROFILE)
    assert {k: again[k].read_bytes() for k in before} == before


def test_without_mlflow_store_the_report_says_so(tmp_path: Path) -> None:
    from mhc_bench.cli import main

    res = make_results(tmp_path, with_mlflow=False)
    assert main(["report", "--results", str(res), "--out", str(tmp_path / "out")]) == 0
    assert not (res / "mlflow.db").exists()  # never created by the check
    md = (tmp_path / "out" / "report.md").read_text()
    assert "absent: no MLflow store found" in md and "# mHC reproduction report: quick" in md
    assert (res / "summary.csv").exists()


def _frame(rows: list[dict[str, Any]], experiments: str = "main+n_sweep+ablation") -> pd.DataFrame:
    """A summary frame of synthetic cells (every cell serves ``experiments`` unless it says otherwise)."""
    base = {
        "n": 4,
        "scale": "d64-b2",
        "d_model": 64,
        "n_layer": 2,
        "maps": "res+pre+post",
        "lr": 1e-3,
        "steps": 100,
        "has_metrics": True,
        "status": "completed",
        "grad_clip": 1.0,
        "mix_weight": 0.0,
        "experiments": experiments,
    }
    return pd.DataFrame([{**base, "cell_id": f"c{i}", **r} for i, r in enumerate(rows)])


def test_overhead_rule_judges_fused_gpu_rows_only() -> None:
    def verdict(ratio: float, hardware: dict[str, Any]) -> str:
        bench = {
            "rows": [
                {"variant": "mhc", "n": 4, "d_model": 1024, "path": "triton", "ratio_to_baseline": ratio}
            ],
            "hardware": hardware,
        }
        return RULES["overhead_ratio"](
            Evidence(_frame([]), bench=bench),
            variant="mhc",
            n=4,
            paper_ratio=1.067,
            tolerance=0.05,
            fused_paths=["triton"],
        ).verdict

    assert verdict(1.08, {"device": "cuda", "gpu": "H100"}) == "reproduced"
    assert verdict(1.30, {"device": "cuda", "gpu": "H100"}) == "not reproduced"
    assert verdict(1.08, {"device": "cpu"}) == "inconclusive"


def test_stats_t_quantiles_and_intervals() -> None:
    assert t975(1) == pytest.approx(12.706, abs=1e-3) and t975(4) == pytest.approx(2.776, abs=1e-3)
    assert t975(4.9) == t975(4) and t975(1000) == pytest.approx(1.962, abs=1e-3) and math.isnan(t975(0.5))
    est = estimate([1.0, 2.0, 3.0])
    assert est.mean == 2.0 and est.half == pytest.approx(4.303 / math.sqrt(3), rel=1e-4)
    assert estimate([1.0, float("nan"), None]).n == 1 and estimate([]).n == 0
    paired = difference({0: 2.0, 1: 3.0}, {0: 1.0, 1: 2.1})
    assert paired.mean == pytest.approx(0.95) and paired.half == pytest.approx(12.706 * 0.05, rel=1e-4)


def test_malformed_files_are_reported_not_fatal(tmp_path: Path) -> None:
    """Files that do not match their record (a half-written or hand-edited file) are listed."""
    res = tmp_path / "odd"
    cfg = cell_config("mhc", 4, 0)
    good = write_cell(res / "cells", cfg, metrics_record(cfg))
    (good / "eval.json").write_text("{not json")
    partial = res / "cells" / "mhc-n4-x"
    partial.mkdir(parents=True)
    (partial / "metrics.json").write_text(json.dumps({"cell_id": "mhc-n4-x", "status": "completed"}))
    other = res / "cells" / "hc-n4-y"
    other.mkdir(parents=True)
    (other / "cell.yaml").write_text("- not a mapping\n")
    out = build_report(res, tmp_path / "out")
    kinds = {(p.cell_id, p.kind) for p in out["problems"]}
    assert {
        (good.name, "unreadable eval.json"),
        ("mhc-n4-x", "unreadable metrics.json"),
        ("mhc-n4-x", "no config"),
        ("hc-n4-y", "unreadable config"),
        ("hc-n4-y", "no metrics.json"),
    } <= kinds
    detail = next(p.detail for p in out["problems"] if p.kind == "unreadable metrics.json")
    assert "steps_done" in detail and "make reproduce" in detail
    assert out["tracking"].status == "absent"
    summary = pd.read_csv(out["summary_csv"]).set_index("cell_id")
    assert summary.loc[good.name, "n"] == 4 and summary.loc[good.name, "variant"] == "mhc"


def test_command_module_import_is_light() -> None:
    import subprocess
    import sys

    code = "import sys, mhc_bench.report.command; print('pandas' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_eval_scores_reads_the_evaluator_format() -> None:
    from mhc_bench.report.aggregate import eval_scores

    ev = {"status": "completed", "results": {
        "mhcb_gsm": {"kind": "group", "group": None, "n": 4, "chance": 0.0,
                     "metrics": {"exact_match/strict-match": {"value": 0.25, "stderr": 0.1}}},
        "mhcb_mmlu_letter": {"kind": "group", "group": None, "n": 8, "chance": 0.25,
                             "metrics": {"acc": {"value": 0.5, "stderr": 0.2}}},
    }}
    scores = eval_scores(ev)
    assert scores["mhcb_gsm:exact_match/strict-match"] == {
        "metric": "exact_match/strict-match", "value": 0.25, "stderr": 0.1, "n": 4, "chance": 0.0}
    assert scores["mhcb_mmlu_letter:acc"]["chance"] == 0.25
    assert eval_scores({"status": "skipped", "results": {}}) == {}


def test_bench_environment_reads_the_benchmark_record() -> None:
    from mhc_bench.report.aggregate import bench_environment

    bench = {"meta": {"environment": {"device": "cpu", "cpu_count": 2, "versions": {"torch": "2.13.0"}}}}
    assert bench_environment(bench) == ({"device": "cpu", "cpu_count": 2}, {"torch": "2.13.0"})
    assert bench_environment({"hardware": {"device": "cuda"}, "versions": {"x": "1"}}) == (
        {"device": "cuda"}, {"x": "1"})
    assert bench_environment(None) == ({}, {})


def test_exact_match_at_zero_is_no_signal_never_above_chance() -> None:
    rows = []
    for variant, n in (("baseline", 1), ("hc", 4), ("mhc", 4)):
        rows += [{"variant": variant, "n": n, "seed": s, "eval.gen": 0.0, "eval.gen.chance": math.nan,
                  "eval.gen.stderr": 0.0, "eval.gen.metric": "exact_match"} for s in range(2)]
    frame = _frame(rows)
    table = tables.downstream_table(frame).frame
    assert set(table["chance"]) == {"n/a"} and set(table["signal"]) == {"no signal (0)"}
    out = RULES["downstream_beats"](Evidence(frame), variant="mhc", baseline="baseline", rival="hc",
                                    maps="res+pre+post", chance_tol=0.0)
    assert out.verdict == "inconclusive" and "no signal" in out.reason


def test_stale_probe_results_are_listed_and_left_out(tmp_path: Path) -> None:
    """A cell probed under an older definition must not mix with current gains."""
    res = make_results(tmp_path)
    cell = res / "cells" / IDS["mhc0"]
    cf.write_metrics(cell, cf.read_metrics(cell).model_copy(update={"probe_version": 1}))
    out = build_report(res, tmp_path / "out")
    stale = [p for p in out["problems"] if p.kind == "stale probes"]
    assert [p.cell_id for p in stale] == [IDS["mhc0"]] and "mhc-bench probe" in stale[0].detail
    summary = pd.read_csv(out["summary_csv"]).set_index("cell_id")
    assert math.isnan(summary.loc[IDS["mhc0"], "max_composite_fwd"])
    assert summary.loc[IDS["mhc1"], "max_composite_fwd"] == 1.35


def test_numerical_replicate_is_not_missing_its_eval(tmp_path: Path) -> None:
    """A replicate (train.rerun) serves main's loss noise only: no 'trained but not evaluated' row,
    while the same cell without rerun is flagged."""
    from mhc_bench.report.cells import read_cell

    flagged, folders = {}, {}
    for rerun in (0, 1):
        cfg = cell_config("mhc", 4, 0, experiments=["main"])
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"rerun": rerun})})
        folders[rerun] = folder = write_cell(tmp_path / f"r{rerun}", cfg, metrics_record(cfg))
        flagged[rerun] = [p.kind for p in read_cell(folder).problems]
    assert flagged[0] == [f"no {cf.EVAL}"]
    assert flagged[1] == []
    # a profile that evaluates nothing (eval.enabled: false; the report rule passes --no-eval) misses none
    assert read_cell(folders[0], evaluated=False).problems == []


def test_knobs_column_is_blank_not_nan_for_groups_without_knobs() -> None:
    table = tables.Table("t", pd.DataFrame([{"variant": "hc", "knobs": "projection_init_std=0.02"},
                                            {"variant": "mhc"}]))
    assert table.frame["knobs"].tolist() == ["projection_init_std=0.02", ""]
