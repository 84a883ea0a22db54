"""``mhc-bench train --config CELL.yaml [--out DIR]``: train one cell (resumes, skips finished cells)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="cell config (YAML)")
    parser.add_argument("--out", type=Path, default=None,
                        help="cell directory (default results/cells/<cell id>)")
    parser.add_argument("--steps", type=int, default=None, help="override train.steps")
    parser.add_argument("--tracking-uri", default=None, help="override tracking.tracking_uri")


def run(args: argparse.Namespace) -> int:
    from mhc_bench.train.config import ConfigError, cell_id, load_cell_config, parse_cell_config

    try:
        cfg = load_cell_config(args.config)
        data = cfg.model_dump(mode="json")
        if args.steps is not None:
            data["train"]["steps"] = args.steps
        if args.tracking_uri is not None:
            data["tracking"]["tracking_uri"] = args.tracking_uri
        cfg = parse_cell_config(data)
    except FileNotFoundError as err:
        print(f"error: cannot read cell config: {err}", file=sys.stderr)
        return 2
    except ConfigError as err:
        print(f"error: invalid cell config {args.config}:\n{err}", file=sys.stderr)
        return 2

    from mhc_bench.data.errors import DataSourceError
    from mhc_bench.train.runner import default_cell_dir, train_cell

    out = args.out if args.out is not None else default_cell_dir(cfg)
    print(f"cell {cell_id(cfg)} -> {out}", flush=True)
    try:
        train_cell(cfg, out)
    except ConfigError as err:  # found only once the data is known (e.g. model.vocab_size too small)
        print(f"error: invalid cell config {args.config}:\n{err}", file=sys.stderr)
        return 2
    except DataSourceError as err:  # e.g. a Hub corpus while offline: one line, before any compute
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
