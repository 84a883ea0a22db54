"""``build_report``: read a profile's results, write summary.csv, the report, plots and scorecard.

Reads only; a missing file, store or benchmark is reported, never fatal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from mhc_bench.report import evidence_tables as et
from mhc_bench.report import experiment_tables as xt
from mhc_bench.report import frontier, paper, tables
from mhc_bench.report.aggregate import build_frame, write_summary
from mhc_bench.report.cells import read_bench, read_cells
from mhc_bench.report.claims import load_claims, rule_params, scorecard, write_scorecard
from mhc_bench.report.compare import EXPERIMENTS, in_experiment, present_experiments
from mhc_bench.report.mlflow_check import check_tracking
from mhc_bench.report.perf_model import PERF_MODEL, perf_model_path, read_perf_model
from mhc_bench.report.plots import make_plots
from mhc_bench.report.render import Report, environment, header_lines, render_html, render_markdown
from mhc_bench.report.rules import Evidence

CLAIM_NOTES = [
    "Each claim is judged in the setting the paper measured, on the experiment that settles it "
    "(C1/C2: mHC cells trained with the recipe, clipping on at the main experiment's lr; C3: main + "
    "depth; C4: frontier, on training failures and loss spikes only; C5: main; C6: ablation; C7: "
    "n_sweep; C8: downstream), and its reason names that experiment and its scale. Loss and accuracy "
    "claims use a 95 % interval from seed and numerical noise pooled at the scale, with the minimum "
    "detectable effect next to the paper's effect: 'underpowered' when the interval includes 0 and the "
    "MDE exceeds that effect, 'degenerate' when the n streams collapsed onto one. X rows are findings, "
    "not the paper's claims; V rows judge other variants with the same rules. C9 needs fused kernels "
    "timed on a GPU.",
]


def training_kernels(cells: list[Any]) -> str:
    """The ``model.kernels`` the training cells ran with (their configs), e.g. ``auto``."""
    found = sorted({str(c.config.model.kernels) for c in cells if c.config is not None})
    return "/".join(found) or "unknown"


def experiments_line(frame: pd.DataFrame) -> str:
    """Which experiments this profile runs (cells per experiment) and which claims' experiments it lacks."""
    run = [f"{name} ({len(in_experiment(frame, name))} cells)" for name in present_experiments(frame)]
    missing = [name for name in EXPERIMENTS if name not in present_experiments(frame)]
    return (f"- **Experiments:** {', '.join(run) or 'none'}"
            + (f"; not run here: {', '.join(missing)}" if missing else ""))


def build_report(results_dir: Path, out_dir: Path, profile: str | None = None,
                 evaluated: bool = True) -> dict[str, Any]:
    """Aggregate ``results_dir`` (one profile) into ``out_dir``; returns the paths and the scorecard.
    ``evaluated``: whether the profile evaluates at all (else no cell's eval.json is missing)."""
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    profile = profile or results_dir.resolve().name
    cells = read_cells(results_dir, evaluated)
    bench, problems = read_bench(results_dir)
    problems += [p for c in cells for p in c.problems]
    frame, mismatches = build_frame(cells)
    problems += mismatches

    tracking = check_tracking(results_dir, cells, profile)
    problems += tracking.problems
    if tracking.status == "checked" and not frame.empty:
        frame["in_mlflow"] = frame["cell_id"].isin(list(tracking.runs))
    summary = write_summary(frame, results_dir / "summary.csv")

    # The kernels' performance model lives next to the profiles' folders (results/kernels/).
    perf = read_perf_model(perf_model_path(results_dir), f"results/{PERF_MODEL.as_posix()}")
    histories = {c.cell_id: c.history for c in cells}
    gains = {c.cell_id: c.gains for c in cells}
    evidence = Evidence(frame, histories, bench, gains, perf)
    claims = load_claims()
    card = scorecard(evidence, claims)
    claims_csv, claims_json = write_scorecard(card, out_dir)
    plots = make_plots(frame, cells, out_dir / "plots")

    blowup = float(rule_params("training_instability", claims).get("blowup_gain", frontier.BLOWUP_GAIN))
    target = float(rule_params("composite_gain_grows", claims).get("target", paper.HC_PEAK))
    collapse = float(rule_params("loss_gap_negative", claims).get("collapse_spread", 2 ** -7))
    effects = {c["id"]: float(c["params"]["paper_effect"]) for c in claims
               if c["id"] in ("C5", "C6", "C7") and "paper_effect" in (c.get("params") or {})}
    stress = rule_params("projection_stress", claims)
    sections = [tables.problems_table(problems)]
    sections += [
        et.power_table(frame, effects),
        et.stream_spread_table(frame, collapse),
        et.stress_table(frame, stress.get("variant", paper.PROPOSED), float(stress.get("high", 1.1)),
                        float(stress.get("ceiling", 2.0))),
        xt.gain_vs_depth_table(frame),
        xt.growth_fit_table(frame, target),
        xt.frontier_table(frame, histories, gains, blowup),
        xt.stable_lr_table(frame, histories, gains, blowup),
        xt.n_sweep_table(frame),
        tables.ablation_table(frame),
        tables.downstream_table(frame),
        tables.stability_table(frame),
        tables.accuracy_table(frame),
        tables.overhead_table(frame, training_kernels(cells)),
    ]
    bench_t = tables.bench_table(bench)
    sections += [bench_t] if bench_t else []
    sections += [xt.predicted_overhead_table(perf), tables.cells_table(frame)]
    env = environment(bench, cells)
    header = header_lines(profile, results_dir, env, len(cells), f"{tracking.status}: {tracking.message}")
    header.insert(1, experiments_line(frame))
    report = Report(f"mHC reproduction report: {profile}", header, card, list(CLAIM_NOTES), sections, plots)
    md, page = out_dir / "report.md", out_dir / "report.html"
    md.write_text(render_markdown(report))
    page.write_text(render_html(report))
    return {
        "profile": profile,
        "summary_csv": summary,
        "report_md": md,
        "report_html": page,
        "claims_csv": claims_csv,
        "claims_json": claims_json,
        "plots": plots,
        "scorecard": card,
        "problems": problems,
        "tracking": tracking,
        "n_cells": len(cells),
    }
