"""The report on a profile that runs every experiment: tables, plots and verdicts per experiment.

A results folder is written through the product's writers (``tests/cell_records.py``) with
chosen numbers: main (baseline / HC / mHC, 3 seeds), depth (HC's composite gain x1.2 per
residual layer, mHC flat), frontier (HC diverges from lr 0.01, mHC only at 0.1), n_sweep
(mHC's gap falls with n), downstream (mixed task text; mHC leaves chance) and a kernel
performance model. Every expectation below follows from those numbers.
"""

from __future__ import annotations

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
from mhc_bench.definitions import PROBE_VERSION
from mhc_bench.report.build import build_report

PROFILE = "every"
SEEDS = (0, 1, 2)
MAIN = {"d_model": 64, "n_layer": 2}
NARROW = {"d_model": 32}
DEPTH_BLOCKS = (1, 2, 4)  # L = 2, 4, 8
LRS = (1e-3, 1e-2, 1e-1)
# frontier: seeds diverged per (variant, lr)
DIVERGED = {("baseline", 1e-1): 3, ("hc", 1e-2): 2, ("hc", 1e-1): 3, ("mhc", 1e-1): 1}
# The layout of mhc_bench.gpu.cost's results/kernels/model.json (only the keys the report reads).
PERF = {"assumptions": {"hidden": 4096, "n": 4}, "predicted": {"H100": {"overhead_pct": 7.1}}}


def _gain(layers: int, seed: int) -> float:
    return 1.1 * 1.2 ** layers * (1 + 0.01 * (seed - 1))


def _write(res: Path, cfg: Any, history: list[dict[str, Any]] | None = None,
           single_fwd: list[float | None] | None = None, scores: dict[str, float] | None = None,
           **metrics: Any) -> None:
    record = metrics_record(cfg, **metrics)
    folder = write_cell(res / "cells", cfg, record, history, single_fwd=single_fwd)
    if scores is not None:
        cf.write_eval(folder, eval_record(record.cell_id, {
            "qa_mc": ("acc", scores["qa_mc"], 0.01, 0.25),
            "qa_gen": ("exact_match", scores["qa_gen"], 0.0, None)}))


def _main_loss(variant: str, n: int, seed: int) -> float:
    gap = {"baseline": 0.0, "hc": -0.01}.get(variant, {1: 0.0, 2: -0.01, 4: -0.02, 8: -0.025}[n])
    return 3.0 + gap + 0.001 * seed


def make_results(root: Path) -> Path:
    res = root / "results" / PROFILE
    res.mkdir(parents=True)
    at_chance = {"qa_mc": 0.25, "qa_gen": 0.0}
    for seed in SEEDS:
        for variant, n in (("baseline", 1), ("hc", 4), ("mhc", 4)):  # main (+ n_sweep for mHC n=4)
            serves = ["main", "n_sweep"] if variant == "mhc" else ["main"]
            gain = 6.0 if variant == "hc" else 1.0
            _write(res, cell_config(variant, n, seed, **MAIN, experiments=serves), scores=at_chance,
                   final_val_loss=_main_loss(variant, n, seed), max_composite_fwd=gain,
                   max_composite_bwd=gain)
            # downstream: trained on mixed task text, mHC leaves chance
            mixed = {"baseline": 0.30, "hc": 0.33, "mhc": 0.40}[variant] + 0.002 * seed
            _write(res, cell_config(variant, n, seed, **MAIN, mix_weight=0.1, experiments=["downstream"]),
                   scores={"qa_mc": mixed, "qa_gen": 0.0}, final_val_loss=3.0)
        for n in (1, 2, 8):  # n_sweep
            _write(res, cell_config("mhc", n, seed, **MAIN, experiments=["n_sweep"]),
                   final_val_loss=_main_loss("mhc", n, seed))
        for blocks in DEPTH_BLOCKS:  # depth
            g = _gain(2 * blocks, seed)
            _write(res, cell_config("hc", 4, seed, **NARROW, n_layer=blocks, experiments=["depth"]),
                   max_composite_fwd=g, max_composite_bwd=g / 3)
            _write(res, cell_config("mhc", 4, seed, **NARROW, n_layer=blocks, experiments=["depth"]))
        for variant, n in (("baseline", 1), ("hc", 4), ("mhc", 4)):  # frontier, no clipping
            for lr in LRS:
                cfg = cell_config(variant, n, seed, **NARROW, n_layer=2, lr=lr, grad_clip=0.0,
                                  experiments=["frontier"])
                if seed >= DIVERGED.get((variant, lr), 0):
                    _write(res, cfg, final_val_loss=3.5)
                    continue
                history = [{"step": 10, "single_fwd": [1.5, 1.2, 1.1, 1.0], "probe_version": PROBE_VERSION},
                           {"step": 20, "single_fwd": [40.0, 3.0, 1.1, 1.0], "probe_version": PROBE_VERSION}]
                _write(res, cfg, history, single_fwd=[None] * 4, status="diverged", stopped_step=20,
                       stop_reason="non-finite loss", steps_done=20, final_val_loss=None,
                       final_train_loss=None, spike_count=2, max_composite_fwd=None, max_single_fwd=None)
    (root / "results" / "kernels").mkdir()
    (root / "results" / "kernels" / "model.json").write_text(json.dumps(PERF))
    return res


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("every")
    return build_report(make_results(root), root / "report", PROFILE)


def section(built: dict[str, Any], title: str) -> str:
    return built["report_md"].read_text().split(f"## {title}\n")[1].split("\n## ")[0]


def table(built: dict[str, Any], title: str) -> pd.DataFrame:
    """A Markdown table of the report back as a DataFrame of strings."""
    lines = [ln for ln in section(built, title).splitlines() if ln.startswith("|")]
    cells = [[c.strip() for c in ln.strip("|").split(" | ")] for ln in lines]
    return pd.DataFrame(cells[2:], columns=cells[0])


def test_every_claim_but_c6_and_c9_gets_a_verdict_from_its_experiment(built: dict[str, Any]) -> None:
    card = {row["id"]: row for row in built["scorecard"]}
    assert {k: v["verdict"] for k, v in card.items()} == {
        "C1": "reproduced", "C2": "reproduced", "C3": "reproduced", "C4": "reproduced",
        "C5": "reproduced", "C6": "inconclusive", "C7": "reproduced", "C8": "reproduced",
        "C9": "inconclusive", "X1": "finding"}
    assert "depth experiment at n=4, d_model 32, L=2/4/8 (3 seeds)" in card["C3"]["reason"]
    assert card["C4"]["reason"].startswith("frontier experiment at d32-b2 n=4, lr 0.001-0.1")
    assert "hc failed in 2/3 seeds at lr 0.01, where mhc failed in none" in card["C4"]["reason"]
    assert card["C5"]["reason"].startswith("main experiment at d64-b2")
    assert card["C6"]["reason"] == "this profile runs no ablation experiment"
    assert card["C7"]["reason"].startswith("n_sweep experiment at d64-b2 (n=1/2/4/8, 3 seeds)")
    assert card["C8"]["reason"].startswith("downstream experiment at d64-b2")
    assert "qa_mc:acc mhc n=4 d64-b2 mix=0.1" in card["C8"]["reason"]
    assert "needs a GPU" in card["C9"]["reason"]
    assert "predicted, not measured (results/kernels/model.json): H100 hidden=4096, n=4: 1.071" \
        in card["C9"]["reason"]
    assert card["X1"]["summary"].startswith("off the recipe, the bound")


def test_gain_vs_depth_tables(built: dict[str, Any]) -> None:
    depth = table(built, "Gain vs depth (depth experiment)")
    hc = depth[depth["variant"] == "hc"].set_index("L (residual layers)")
    assert list(hc.index) == ["2", "4", "8"]
    mean8 = sum(_gain(8, s) for s in SEEDS) / 3
    assert hc.loc["8", "max composite fwd"].startswith(f"{mean8:.3f} ± ")
    assert set(depth[depth["variant"] == "mhc"]["max composite fwd"]) == {"1.000 ± 0.000 (n=3)"}
    fits = table(built, "Gain growth per residual layer (depth experiment, log-linear fit)")
    hc_max = fits[(fits["variant"] == "hc") & (fits["gain"] == "max")].iloc[0]
    assert hc_max["growth per layer"].startswith("x1.2")
    low, high = (float(v) for v in hc_max["95 % CI"].strip("[]").split(", "))
    assert 1.0 < low < 1.2 < high
    reach = float(hc_max["L reaching 3000 (extrapolation)"].lstrip("~"))
    assert reach == pytest.approx(math.log(3000 / 1.1) / math.log(1.2), abs=2)
    mhc_max = fits[(fits["variant"] == "mhc") & (fits["gain"] == "max")].iloc[0]
    assert mhc_max["growth per layer"] == "x1.0000" and mhc_max["L reaching 3000 (extrapolation)"] == \
        "never (no growth)"
    assert "EXTRAPOLATION" in section(built, "Gain growth per residual layer (depth experiment, log-linear "
                                              "fit)")


def test_frontier_tables(built: dict[str, Any]) -> None:
    front = table(built, "Stability frontier (frontier experiment)")
    hc = front[front["variant"] == "hc"].set_index("lr")
    assert hc.loc["0.01", "diverged"] == "2/3" and hc.loc["0.1", "diverged"] == "3/3"
    assert hc.loc["0.001", "clip"] == "0" and hc.loc["0.01", "diverged at step"] == "20, 20"
    assert hc.loc["0.01", "loss spikes (total, per seed)"] == "4 (2, 2, 0)"
    assert hc.loc["0.01", "first layer with single gain > 10"] == "layer 0 @ 20; layer 0 @ 20; —"
    stable = table(built, "Largest stable learning rate per variant (frontier experiment)")
    stable = stable.set_index("variant")
    assert stable.loc["hc", "largest stable lr"] == "0.001"
    assert stable.loc["mhc", "largest stable lr"] == "0.01"
    assert stable.loc["baseline", "largest stable lr"] == "0.01"
    assert stable.loc["mhc", "diverged seeds per lr"] == "0.001: 0/3, 0.01: 0/3, 0.1: 1/3"


def test_n_sweep_ablation_and_downstream_tables(built: dict[str, Any]) -> None:
    sweep = table(built, "Loss gap vs n (n_sweep experiment)").set_index("n")
    assert list(sweep.index) == ["1", "2", "4", "8"]
    assert sweep.loc["8", "gap vs baseline"].startswith("-0.0250 ± 0.0000")
    assert sweep.loc["2", "paper gap (mHC)"] == "-0.009"
    ablation = section(built, "Ablation: which maps carry the gain (Table 1)")
    assert "this profile runs no ablation experiment" in ablation
    down = section(built, "Accuracy: downstream tasks")
    assert ("In the downstream experiment these scores left chance: qa_mc:acc baseline n=1 d64-b2 mix=0.1 "
            "0.302; qa_mc:acc hc n=4 d64-b2 mix=0.1 0.332; qa_mc:acc mhc n=4 d64-b2 mix=0.1 0.402.") in down
    # (qa_gen, exact match at 0, would come first: tasks are listed in name order)
    predicted = table(built, "Overhead, predicted, not measured (kernel performance model)")
    assert predicted.iloc[0].to_dict() == {"gpu": "H100", "shape": "hidden=4096, n=4",
                                           "predicted: headline": "+7.1 %"}


def test_group_tables_keep_frontier_and_mixed_cells_apart(built: dict[str, Any]) -> None:
    acc = table(built, "Accuracy: validation loss")
    main_hc = acc[(acc["variant"] == "hc") & (acc["scale"] == "d64-b2") & (acc["mix"] == "0")]
    assert len(main_hc) == 1 and main_hc.iloc[0]["experiments"] == "main"
    mixed = acc[(acc["variant"] == "hc") & (acc["mix"] == "0.1")]
    assert len(mixed) == 1 and mixed.iloc[0]["experiments"] == "downstream"
    assert "experiments" in table(built, "Cells").columns
    header = built["report_md"].read_text().split("## Verdict summary")[0]
    assert "**Experiments:** main (9 cells), depth (18 cells), frontier (27 cells), n_sweep (12 cells), " \
           "downstream (9 cells); not run here: ablation" in header


def test_cells_not_evaluated_by_design_are_no_problem(built: dict[str, Any]) -> None:
    """depth, frontier and n_sweep cells (no eval.json: their claims read losses and gains) are not
    listed as missing an evaluation, nor as rows of dashes in the downstream table."""
    assert [p for p in built["problems"] if p.kind == "no eval.json"] == []
    down = table(built, "Accuracy: downstream tasks")
    assert set(down["experiments"]) == {"main", "main+n_sweep", "downstream"}


def test_experiment_plots_are_written(built: dict[str, Any]) -> None:
    names = {p.name for p in built["plots"]}
    assert {"gain_vs_depth.png", "stability_frontier.png", "loss_gap_vs_n.png"} <= names
    for p in built["plots"]:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 2000


def test_rerun_is_byte_identical(built: dict[str, Any]) -> None:
    before = {k: built[k].read_bytes() for k in ("summary_csv", "claims_json", "report_md")}
    again = build_report(built["summary_csv"].parent, built["report_md"].parent, PROFILE)
    assert {k: again[k].read_bytes() for k in before} == before
