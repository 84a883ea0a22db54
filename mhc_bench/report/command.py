"""``mhc-bench report``: tables, plots and the claims scorecard from a profile's results.

Reads only (nothing is retrained). Exit status 0 even when cells are missing:
they are listed in the report's "Missing / inconsistent" section. Heavy imports
(pandas, matplotlib, mlflow) happen in ``run`` so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--results", type=Path, required=True, help="the profile's results folder, e.g. results/quick"
    )
    parser.add_argument("--out", type=Path, required=True, help="where the report goes, e.g. report/quick")
    parser.add_argument(
        "--profile", default=None, help="profile name for the header (default: the folder name)"
    )
    parser.add_argument(
        "--no-eval", action="store_true",
        help="the profile evaluates nothing (eval.enabled: false): a cell without eval.json is not missing",
    )


def run(args: argparse.Namespace) -> int:
    from mhc_bench.report.build import build_report

    results = Path(args.results)
    if not results.is_dir():
        print(f"mhc-bench report: no results folder {results}")
        return 2
    out = build_report(results, Path(args.out), args.profile, evaluated=not args.no_eval)
    verdicts = [row["verdict"] for row in out["scorecard"]]
    n_problems = len(out["problems"])
    print(f"report for {out['profile']}: {out['n_cells']} cells, {n_problems} missing/inconsistent item(s)")
    for row in out["scorecard"]:
        print(f"  {row['id']}: {row['verdict']}: {row['reason'][:100]}")
    print(
        f"  reproduced {verdicts.count('reproduced')}, not reproduced {verdicts.count('not reproduced')}, "
        f"inconclusive {verdicts.count('inconclusive')}"
    )
    print(f"wrote {out['summary_csv']}, {out['report_md']}, {out['report_html']}, {out['claims_csv']}")
    return 0
