"""``mhc-bench cell CELL_ID``: (re)run one cell of a profile through Snakemake.

A wrapper around ``snakemake results/<profile>/cells/<cell_id>/eval.json`` so that a single
ablation cell is one command, with the same DAG (data, tracking store, training,
evaluation), the same rerun policy and the same project lock as ``make reproduce``.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cell_id", help="a cell id as listed by `mhc-bench cells --profile P`")
    parser.add_argument("--profile", help="profile holding the cell (default: search every profile)")
    parser.add_argument("--cores", default="all", help="passed to snakemake --cores (default all)")
    parser.add_argument("--force", action="store_true", help="retrain and re-evaluate even if results exist")
    parser.add_argument("-n", "--dry-run", action="store_true", help="show what would run")


def find_profile(cell_id: str, profile: str | None) -> str:
    from mhc_bench.errors import UserError
    from mhc_bench.workflow.grid import ProfileError, known_profiles, profile_cells

    candidates = [profile] if profile else known_profiles()
    for name in candidates:
        try:
            if cell_id in profile_cells(name):
                return name
        except ProfileError:
            if profile:
                raise
    raise UserError(f"cell {cell_id!r} is in none of the profiles {candidates}; see `mhc-bench cells`")


def run(args: argparse.Namespace) -> int:
    from mhc_bench.workflow.grid import final_file, load_profile, profile_cells, profile_path, results_root
    from mhc_bench.workflow.snakerun import run_snakemake

    profile = find_profile(args.cell_id, args.profile)
    config = load_profile(profile)
    final = final_file(config, profile_cells(profile)[args.cell_id])
    target = f"{results_root(config)}/cells/{args.cell_id}/{final}"
    extra = ["--forcerun", "train", "evaluate"] if args.force else []
    extra += ["--dry-run"] if args.dry_run else []
    return run_snakemake(f"mhc-bench cell {args.cell_id}", profile_path(profile), results_root(config),
                         [target], args.cores, extra)
