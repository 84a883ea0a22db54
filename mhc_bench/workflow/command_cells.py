"""``mhc-bench cells --profile P``: list a profile's cell ids with their grid coordinates."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="quick", help="profile name or path to its YAML (default quick)")
    parser.add_argument("--ids-only", action="store_true", help="print only the cell ids, one per line")


def run(args: argparse.Namespace) -> int:
    from mhc_bench.workflow.grid import ProfileError, profile_cells

    try:
        cells = profile_cells(args.profile)
    except ProfileError as err:
        print(f"error: {err}")
        return 2
    for cid, cell in cells.items():
        if args.ids_only:
            print(cid)
        else:
            grid = cell["grid"]
            coords = " ".join(f"{k}={grid[k]}" for k in ("variant", "n", "scale", "seed", "maps", "lr"))
            print(f"{cid}\t{coords}")
    return 0
