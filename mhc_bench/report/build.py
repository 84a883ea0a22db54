"""``build_report``: read a profile's results, write summary.csv, the report, plots and scorecard.

Reads only; a missing file, store or benchmark is reported, never fatal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from mhc_bench.report import tables
from mhc_bench.report.aggregate import build_frame, write_summary
from mhc_bench.report.cells import read_bench, read_cells
from mhc_bench.report.claims import FIELDS, scorecard, write_scorecard
from mhc_bench.report.mlflow_check import check_tracking
from mhc_bench.report.plots import make_plots
from mhc_bench.report.render import environment, header_lines, render_html, render_markdown
from mhc_bench.report.rules import Evidence


def _scorecard_table(rows: list[dict[str, Any]]) -> tables.Table:
    frame = pd.DataFrame(rows, columns=FIELDS)
    frame["paper"] = frame["paper_value"] + " (" + frame["paper_figure"] + ")"
    cols = ["id", "claim", "paper", "reproduced_value", "verdict", "reason", "scale_tested"]
    frame = frame[cols].rename(
        columns={"reproduced_value": "reproduced value", "scale_tested": "scale tested"}
    )
    counts = pd.Series([r["verdict"] for r in rows]).value_counts().to_dict() if rows else {}
    note = ", ".join(f"{v}: {counts.get(v, 0)}" for v in ("reproduced", "not reproduced", "inconclusive"))
    return tables.Table(
        "Claims scorecard",
        frame,
        [
            note,
            "At CPU scale the stability claims (C1-C4) are the "
            "ones expected to reproduce; loss and accuracy claims are judged with 95 % CIs over "
            "seeds and say 'inconclusive' when the CI cannot separate them.",
        ],
    )


def build_report(results_dir: Path, out_dir: Path, profile: str | None = None) -> dict[str, Any]:
    """Aggregate ``results_dir`` (one profile) into ``out_dir``; returns the paths and the scorecard."""
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    profile = profile or results_dir.resolve().name
    cells = read_cells(results_dir)
    bench, problems = read_bench(results_dir)
    problems += [p for c in cells for p in c.problems]
    frame, mismatches = build_frame(cells)
    problems += mismatches

    tracking = check_tracking(results_dir, cells, profile)
    problems += tracking.problems
    if tracking.status == "checked" and not frame.empty:
        frame["in_mlflow"] = frame["cell_id"].isin(list(tracking.runs))
    summary = write_summary(frame, results_dir / "summary.csv")

    evidence = Evidence(frame, {c.cell_id: c.history for c in cells}, bench)
    card = scorecard(evidence)
    claims_csv, claims_json = write_scorecard(card, out_dir)
    plots = make_plots(frame, cells, out_dir / "plots")

    sections = [_scorecard_table(card), tables.problems_table(problems), tables.overhead_table(frame)]
    bench_t = tables.bench_table(bench)
    sections += ([bench_t] if bench_t else []) + [
        tables.stability_table(frame),
        tables.accuracy_table(frame),
        tables.downstream_table(frame),
        tables.ablation_table(frame),
        tables.cells_table(frame),
    ]
    env = environment(bench)
    header = header_lines(profile, results_dir, env, len(cells), f"{tracking.status}: {tracking.message}")
    title = f"mHC reproduction report: {profile}"
    md, page = out_dir / "report.md", out_dir / "report.html"
    md.write_text(render_markdown(title, header, sections, plots))
    page.write_text(render_html(title, header, sections, plots))
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
