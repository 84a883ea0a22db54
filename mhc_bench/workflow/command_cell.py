"""``mhc-bench cell CELL_ID``: (re)run one cell of a profile through Snakemake.

A friendly wrapper around ``snakemake results/<profile>/cells/<cell_id>/eval.json``
so that a single ablation cell is one command, with the same DAG (data, tracking
store, training, evaluation) as the full reproduction.
"""

from __future__ import annotations

import argparse
import subprocess
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cell_id", help="a cell id as listed by `mhc-bench cells --profile P`")
    parser.add_argument("--profile", help="profile holding the cell (default: search every profile)")
    parser.add_argument("--cores", default="all", help="passed to snakemake --cores (default all)")
    parser.add_argument("--force", action="store_true", help="retrain and re-evaluate even if results exist")
    parser.add_argument("-n", "--dry-run", action="store_true", help="show what would run")


def find_profile(cell_id: str, profile: str | None) -> str:
    from mhc_bench.workflow.grid import PROFILE_DIR, ProfileError, profile_cells

    candidates = [profile] if profile else sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))
    for name in candidates:
        try:
            if cell_id in profile_cells(name):
                return name
        except ProfileError:
            continue
    raise LookupError(f"cell {cell_id!r} is in none of the profiles {candidates}; see `mhc-bench cells`")


def run(args: argparse.Namespace) -> int:
    from mhc_bench.paths import PROJECT_ROOT
    from mhc_bench.workflow.grid import load_profile, profile_path, results_root

    try:
        profile = find_profile(args.cell_id, args.profile)
    except LookupError as err:
        print(f"error: {err}")
        return 2
    config = load_profile(profile)
    final = "eval.json" if config["eval"]["enabled"] else "metrics.json"
    target = f"{results_root(config)}/cells/{args.cell_id}/{final}"
    # The target comes first: --configfile and --rerun-triggers take several values.
    cmd = [sys.executable, "-m", "snakemake", target, "--cores", args.cores, "--rerun-incomplete",
           "--configfile", str(profile_path(profile)),
           "--rerun-triggers", "mtime", "params", "input"]  # as `make reproduce`: code edits retrain nothing
    if args.force:
        cmd += ["--forcerun", "train", "evaluate"]
    if args.dry_run:
        cmd.append("--dry-run")
    print(" ".join(cmd))
    return subprocess.call(cmd, cwd=PROJECT_ROOT)
