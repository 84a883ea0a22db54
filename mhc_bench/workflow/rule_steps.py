"""Small workflow steps that Snakemake rules run as ``python -m mhc_bench.workflow.rule_steps``.

Keeping the logic here (not in rule ``run:`` blocks) keeps rule code stable:
Snakemake reruns jobs whose rule code changed, and a cosmetic edit must not
retrain every cell.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from mhc_bench.errors import UserError
from mhc_bench.paths import configure_environment


def _write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def prepare_data_step(data_json: str, out: Path) -> None:
    from mhc_bench.data import DataConfig, prepare_data

    prepared = prepare_data(DataConfig(**json.loads(data_json)))
    _write_json(out, {k: str(v) if isinstance(v, Path) else v for k, v in asdict(prepared).items()})


def prepare_tasks_step(max_items: int, out: Path, tasks: list[str], source: str | None) -> None:
    """Build the local lm-eval suite once (generated items, YAMLs), after checking that every
    external thing the profile names (a BIG-bench source, the hub for lm-eval's tasks) exists."""
    from mhc_bench.evaluation import sources
    from mhc_bench.evaluation.prepare import prepare_tasks

    sources.preflight(tasks, source)
    prepared = prepare_tasks(max_items, source=source)
    sources.unknown_local(tasks, set(prepared.leaves) | set(prepared.groups))
    _write_json(out, {"root": str(prepared.root), "config_hash": prepared.config_hash,
                      "leaves": sorted(prepared.leaves), "groups": sorted(prepared.groups),
                      "source": source})


def tracking_init_step(uri: str, experiment: str, out: Path) -> None:
    """Create the MLflow store and the profile's experiment once, before any cell runs."""
    from mhc_bench.tracking import ensure_experiment

    exp_id = ensure_experiment(uri, experiment)
    _write_json(out, {"tracking_uri": uri, "experiment": experiment, "experiment_id": exp_id})


def bench_step(out: Path, args_line: str) -> int:
    """``mhc-bench bench`` with the profile's arguments, which arrive as one quoted word."""
    from mhc_bench import cli

    return cli.main(["bench", "--out", str(out), *args_line.split()])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mhc_bench.workflow.rule_steps")
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare-data")
    p.add_argument("--data", required=True, help="DataConfig fields as JSON")
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("prepare-tasks")
    p.add_argument("--max-items", type=int, required=True)
    p.add_argument("--tasks", nargs="+", default=["mhcb_bbh", "mhcb_gsm", "mhcb_mmlu"])
    p.add_argument("--source", default=None)
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("tracking-init")
    p.add_argument("--uri", required=True)
    p.add_argument("--experiment", required=True)
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("bench")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--args", default="", help="mhc-bench bench arguments, whitespace-separated")
    args = parser.parse_args(argv)
    if args.step == "bench":
        return bench_step(args.out, args.args)
    configure_environment()
    try:
        if args.step == "prepare-data":
            prepare_data_step(args.data, args.out)
        elif args.step == "prepare-tasks":
            # The DAG passes the task names as one quoted word: split them here.
            tasks = [name for arg in args.tasks for name in arg.split()]
            prepare_tasks_step(args.max_items, args.out, tasks, args.source or None)
        else:
            tracking_init_step(args.uri, args.experiment, args.out)
    except UserError as err:  # one line in the rule's log, as the CLI prints it
        print(f"{args.step}: error: {err.one_line()}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
