"""``mhc-bench reproduce --profile P``: the whole DAG of a profile (what ``make reproduce`` runs).

Safe to rerun after anything: finished cells are kept, interrupted ones resume from their
checkpoints, a leftover Snakemake lock from a killed run is cleared, broken result files are
regenerated, and a second concurrent run is refused (see :mod:`mhc_bench.workflow.snakerun`).
``--report-only`` rebuilds the tables, plots and scorecard from existing results (``make
report``); it trains nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="quick", help="profile name or path to its YAML (default quick)")
    parser.add_argument("--cores", default="all", help="passed to snakemake --cores (default all)")
    parser.add_argument("--report-only", action="store_true",
                        help="rebuild the report from existing results; train and evaluate nothing")
    parser.add_argument("-n", "--dry-run", action="store_true", help="show what would run")
    parser.add_argument("--directory", type=Path, default=None,
                        help="working directory for results and reports (default: the project root)")
    parser.add_argument("snakemake_args", nargs="*", metavar="-- SNAKEMAKE_ARG",
                        help="extra arguments for snakemake, after a literal --")


def run(args: argparse.Namespace) -> int:
    from mhc_bench.paths import PROJECT_ROOT
    from mhc_bench.workflow.grid import load_profile, profile_path, results_root
    from mhc_bench.workflow.snakerun import run_snakemake

    config = load_profile(args.profile)
    workdir = args.directory or PROJECT_ROOT
    if config["eval"]["enabled"] and not args.report_only:  # a missing external source: one line, now
        from mhc_bench.evaluation.sources import preflight

        preflight(config["eval"]["tasks"], config["eval"]["source"], workdir)
    targets: list[str] = []
    extra = list(args.snakemake_args) + (["--dry-run"] if args.dry_run else [])
    if args.report_only:
        targets = ["report"]
        extra += ["--config", "report_only=True", "--forcerun", "report"]
    from mhc_bench.workflow.grid import cell_configs
    from mhc_bench.workflow.power_plan import plan_text

    if not args.report_only and (plan := plan_text(config, cell_configs(config), workdir)):
        print(plan, flush=True)
    return run_snakemake(f"mhc-bench reproduce --profile {config['profile']}", profile_path(args.profile),
                         results_root(config), targets, args.cores, extra, workdir,
                         config=config, report_only=args.report_only)
