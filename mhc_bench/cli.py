"""``mhc-bench`` command line. Each subcommand lives in its own module.

A command module exposes ``add_arguments(parser)`` and ``run(args) -> int``
and keeps heavy imports (torch, lightning, lm-eval) inside ``run`` so that
``--help`` stays fast. Modules load only when their command is used. A
:class:`~mhc_bench.errors.UserError` from any command is printed on stderr as
one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from mhc_bench import __version__
from mhc_bench.errors import UserError
from mhc_bench.heap import keep_freed_memory
from mhc_bench.paths import check_same_checkout, configure_environment

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("mhc_bench.data.command", "download, split and tokenize the corpus (cached, idempotent)"),
    "train": ("mhc_bench.train.command", "train one cell from a YAML config"),
    "probe": ("mhc_bench.train.reprobe", "recompute a trained cell's stability probes from its saved model"),
    "eval": ("mhc_bench.evaluation.command", "run lm-eval tasks on a trained cell"),
    "bench": ("mhc_bench.bench.command", "overhead and kernel benchmarks"),
    "kernels": ("mhc_bench.gpu.command", "ahead-of-time GPU compile table, cost model, first-GPU check"),
    "variants": ("mhc_bench.variants.command", "list the registered residual-mixing variants, their knobs"),
    "cells": ("mhc_bench.workflow.list_cells", "list the cell ids of a profile"),
    "cell": ("mhc_bench.workflow.run_cell", "train and evaluate one cell of a profile via Snakemake"),
    "reproduce": ("mhc_bench.workflow.reproduce", "run a profile's whole DAG (make reproduce): resumable"),
    "report": ("mhc_bench.report.command", "aggregate results into tables, plots and the claims scorecard"),
    "store": ("mhc_bench.workflow.store_command", "check the MLflow store or rebuild it from the cell files"),
    "lm-eval": ("mhc_bench.evaluation.lm_eval_cli",
                "lm-eval's own CLI with the mhc-bench model registered (any lm-eval arguments)"),
}
# Commands that take another tool's whole command line (no argparse of their own).
PASSTHROUGH = {"lm-eval"}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mhc-bench",
        description="Reproducibility benchmark suite for mHC (Manifold-Constrained Hyper-Connections).",
    )
    parser.add_argument("--version", action="version", version=f"mhc-bench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command and name not in PASSTHROUGH:
            importlib.import_module(module_name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASSTHROUGH:  # e.g. `mhc-bench lm-eval --model mhc-bench ...`: all theirs
        keep_freed_memory()
        return int(importlib.import_module(COMMANDS[argv[0]][0]).main(argv[1:]) or 0)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    configure_environment()
    keep_freed_memory()
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        check_same_checkout()
        return int(module.run(args) or 0)
    except UserError as err:
        print(f"mhc-bench {args.command}: error: {err.one_line()}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
