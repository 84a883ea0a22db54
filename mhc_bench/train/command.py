"""``mhc-bench train --config CELL.yaml [--out DIR]``: train one cell (resumes, skips finished cells)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="cell config (YAML)")
    parser.add_argument("--out", type=Path, default=None,
                        help="cell directory (default results/cells/<cell id>)")
    parser.add_argument("--steps", type=int, default=None, help="override train.steps")
    parser.add_argument("--tracking-uri", default=None, help="override tracking.tracking_uri")


def run(args: argparse.Namespace) -> int:
    from mhc_bench.cellconfig import cell_id, load_cell_config, parse_cell_config

    cfg = load_cell_config(args.config)
    data = cfg.model_dump(mode="json")
    if args.steps is not None:
        data["train"]["steps"] = args.steps
    if args.tracking_uri is not None:
        data["tracking"]["tracking_uri"] = args.tracking_uri
    cfg = parse_cell_config(data)

    from mhc_bench.train.runner import default_cell_dir, train_cell

    out = args.out if args.out is not None else default_cell_dir(cfg)
    print(f"cell {cell_id(cfg)} -> {out}", flush=True)
    train_cell(cfg, out)
    return 0
