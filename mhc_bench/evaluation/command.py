"""``mhc-bench eval``: prepare the task suite (cached) and evaluate one trained cell."""

from __future__ import annotations

import argparse

# Literal copies of the defaults (evaluation.runner / evaluation.prepare hold the real ones, and
# a test checks they agree) so that `mhc-bench eval --help` imports neither torch nor lm-eval.
DEFAULT_BATCH_SIZE = 16
DEFAULT_MAX_ITEMS = 250
GROUPS = ("mhcb_bbh", "mhcb_gsm", "mhcb_mmlu")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cell", help="trained cell directory (results/cells/<id>/)")
    parser.add_argument("--tasks", nargs="+", default=list(GROUPS),
                        help=f"local groups/tasks {list(GROUPS)} (mhcb_bigbench with --source) or lm-eval "
                             "built-ins (bbh, gsm8k, mmlu; these need hub access: HF_HUB_OFFLINE=0 "
                             "HF_DATASETS_OFFLINE=0); one argument may hold several, space-separated")
    parser.add_argument("--limit", type=int, default=None, help="evaluate at most N items per task")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help="fixed batch size (recorded: scores can move with it)")
    parser.add_argument("--max-items", type=int, default=DEFAULT_MAX_ITEMS,
                        help="cap on evaluated items per task when building the suite")
    parser.add_argument("--source", default=None, metavar="bigbench:PATH",
                        help="BIG-bench task files on this machine (a checkout, its benchmark_tasks folder "
                             "or the bigbench sdist): adds the mhcb_bigbench group; never downloaded")
    parser.add_argument("--force", action="store_true", help="recompute even if eval.json is complete")
    parser.add_argument("--prepare-only", action="store_true",
                        help="only build the cached task data and YAMLs (shared by all cells)")


def run(args: argparse.Namespace) -> int:
    from mhc_bench.errors import UserError
    from mhc_bench.evaluation import sources

    if args.prepare_only:
        from mhc_bench.evaluation.prepare import prepare_tasks

        sources.preflight(args.tasks, args.source)
        prepared = prepare_tasks(args.max_items, source=args.source)
        sources.unknown_local(args.tasks, set(prepared.leaves) | set(prepared.groups))
        print(f"tasks ready in {prepared.root} (config hash {prepared.config_hash[:12]})")
        return 0
    if not args.cell:
        raise UserError("--cell is required (or --prepare-only)")
    from mhc_bench.evaluation.runner import evaluate_cell

    tasks = [name for arg in args.tasks for name in arg.split()]  # the DAG passes them as one quoted word
    record = evaluate_cell(args.cell, tasks, args.limit, args.batch_size, args.max_items,
                           force=args.force, source=args.source)
    if record.status == "skipped":
        print(f"{record.cell}: not evaluated: {record.reason}")
    for name, row in record.results.items():
        chance = "n/a" if row.chance is None else f"{row.chance:.3f}"
        scores = ", ".join(f"{m}={v.value:.3f}" for m, v in row.metrics.items() if v.value is not None)
        print(f"{name:55s} n={row.n:<4d} chance={chance:6s} {scores}")
    return 0
