"""``mhc-bench cells --profile P``: list a profile's cell ids with their grid coordinates."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="quick", help="profile name or path to its YAML (default quick)")
    parser.add_argument("--ids-only", action="store_true", help="print only the cell ids, one per line")


def run(args: argparse.Namespace) -> int:
    from mhc_bench.workflow.grid import GRID_COLUMNS, KNOB_PREFIX, profile_cells

    for cid, cell in profile_cells(args.profile).items():
        if args.ids_only:
            print(cid)
            continue
        grid = cell["grid"]
        coords = " ".join(f"{k}={grid[k]}" for k in GRID_COLUMNS)
        coords += "".join(f" {k}={v}" for k, v in grid.items() if k.startswith(KNOB_PREFIX) and v is not None)
        print(f"{cid}\t{coords}\texperiments={'+'.join(cell['experiments'])}")
    return 0
