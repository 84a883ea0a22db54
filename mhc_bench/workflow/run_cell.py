"""``mhc-bench cell CELL_ID``: (re)run one cell of a profile through Snakemake.

A wrapper around ``snakemake results/<profile>/cells/<cell_id>/eval.json`` so that a single
ablation cell is one command, with the same DAG (data, tracking store, training,
evaluation), the same rerun policy and the same project lock as ``make reproduce``.

- ``--force`` retrains and re-evaluates from nothing: the cell folder is emptied (its
  ``cell.yaml`` kept) and its MLflow run replaced by a new one, so neither a checkpoint
  nor an earlier run's points survive into the new result.
- ``--keep-weights`` regenerates the weights of a finished cell whose folder carries none
  (committed results do not): the cell is retrained from its config in a scratch folder,
  with its own scratch MLflow store and the thread count the DAG uses, and only the
  weights (with the tokenizer and config.yaml if missing) are copied in. Training is
  bit-for-bit reproducible on one machine with one thread count, so the retrained metrics
  equal the committed ones and ``metrics.json`` is left untouched; if they differ (another
  CPU, other library versions), the command says which values moved and by how much, and
  the cell's files and MLflow run take the retrained values so that weights and numbers
  agree.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

# Fields of metrics.json that measure the run rather than the model (never compared).
RUN_FIELDS = ("wall_time_s", "tokens_per_s", "step_time_ms", "first_step_s", "peak_mem_mb", "mlflow_run_id",
              "mlflow_tracking_uri", "mlflow_experiment", "provenance", "weights_bytes", "weights_sha256")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cell_id", help="a cell id as listed by `mhc-bench cells --profile P`")
    parser.add_argument("--profile", help="profile holding the cell (default: search every profile)")
    parser.add_argument("--cores", default="all", help="passed to snakemake --cores (default all)")
    parser.add_argument("--force", action="store_true",
                        help="retrain and re-evaluate from nothing: the cell's folder is emptied and its "
                             "MLflow run replaced")
    parser.add_argument("--keep-weights", action="store_true",
                        help="regenerate a finished cell's weights (model.safetensors) by retraining it in a "
                             "scratch folder; its metrics stay as committed unless the retrained ones differ "
                             "(then it says so)")
    parser.add_argument("-n", "--dry-run", action="store_true", help="show what would run")
    parser.add_argument("--directory", type=Path, default=None,
                        help="working directory holding results/ (default: the project root)")


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


def empty_cell_folder(cell_dir: Path) -> None:
    """Everything but ``cell.yaml`` goes (checkpoint, weights, results, run.json)."""
    import shutil

    from mhc_bench import cellfolder as cf

    if not cell_dir.is_dir():
        return
    for path in cell_dir.iterdir():
        if path.name == cf.CELL_YAML:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def metric_differences(committed: Any, retrained: Any) -> list[str]:
    """``key: committed -> retrained`` for every model-dependent field that differs."""
    a, b = committed.model_dump(), retrained.model_dump()
    diffs = [f"{k}: {a[k]!r} -> {b[k]!r}" for k in a if k not in RUN_FIELDS and a[k] != b.get(k)]
    if committed.weights_sha256 and committed.weights_sha256 != retrained.weights_sha256:
        diffs.append(f"weights sha256: {committed.weights_sha256[:12]} -> {retrained.weights_sha256[:12]}")
    return diffs


def regenerate_weights(config: dict[str, Any], cell: dict[str, Any], cell_id: str, workdir: Path) -> int:
    """Retrain a finished cell in a scratch folder and install its weights (see the module docstring)."""
    import contextlib
    import os
    import shutil
    import subprocess
    import sys

    import yaml

    from mhc_bench import cellfolder as cf
    from mhc_bench import tracking
    from mhc_bench.errors import UserError
    from mhc_bench.workflow.grid import results_root, tracking_uri, write_cell_yaml

    results = workdir / results_root(config)
    cell_dir = results / "cells" / cell_id
    committed = cf.read_metrics(cell_dir)
    if committed is None:
        raise UserError(f"{cell_dir} has no {cf.METRICS}: the cell has not finished, so there is nothing to "
                        f"keep; train it with `mhc-bench cell {cell_id}`")
    scratch = results / ".regenerate" / cell_id
    shutil.rmtree(scratch, ignore_errors=True)
    write_cell_yaml(cell, scratch / cf.CELL_YAML)
    out = scratch / cell_id
    env = {k: v for k, v in os.environ.items() if k != tracking.ENV_URI}
    env["OMP_NUM_THREADS"] = str(config["resources"]["train_threads"])  # as the DAG's train rule runs it
    cmd = [sys.executable, "-m", "mhc_bench.cli", "train", "--config", str(scratch / cf.CELL_YAML),
           "--out", str(out), "--tracking-uri", tracking.sqlite_uri(scratch / "mlflow.db")]
    print(f"{cell_id}: retraining in {scratch} to regenerate its weights", flush=True)
    with contextlib.chdir(workdir):  # the scratch store's URI is relative to the working directory
        code = subprocess.call(cmd, env=env)
    if code != 0:
        raise UserError(f"retraining {cell_id} failed (see above); {cell_dir} is unchanged")
    retrained = cf.read_metrics(out)
    assert retrained is not None
    diffs = metric_differences(committed, retrained)
    if not (cell_dir / cf.TOKENIZER).exists():
        shutil.copy2(out / cf.TOKENIZER, cell_dir / cf.TOKENIZER)
    if not (cell_dir / cf.CONFIG).exists():  # as trained, but naming the profile's store, not the scratch one
        trained = yaml.safe_load((out / cf.CONFIG).read_text())
        trained["tracking"]["tracking_uri"] = tracking_uri(config)
        (cell_dir / cf.CONFIG).write_text(yaml.safe_dump(trained, sort_keys=False))
    shutil.copy2(out / cf.MODEL, cell_dir / cf.MODEL)
    if not diffs:
        print(f"{cell_id}: wrote {cell_dir / cf.MODEL}; the retrained cell matches the committed metrics "
              f"bit for bit ({cf.METRICS} unchanged)")
    else:
        pointers = ("mlflow_run_id", "mlflow_tracking_uri", "mlflow_experiment", "provenance")
        keep = {k: getattr(committed, k) for k in pointers}
        cf.write_metrics(cell_dir, retrained.model_copy(update=keep))
        for name in (cf.HISTORY, cf.GAINS, "gains_per_layer.png", "gains_over_steps.png"):
            shutil.copy2(out / name, cell_dir / name)
        ref = tracking.cell_run(committed)
        if ref is not None and tracking.run_status(ref) is not None:
            from mhc_bench.train.mirror import mirror_cell

            mirror_cell(ref, cell_dir)
        print(f"{cell_id}: wrote {cell_dir / cf.MODEL}, but the retrained metrics differ from the committed "
              f"ones (another CPU or other library versions?): {'; '.join(diffs[:8])}"
              f"{' ...' if len(diffs) > 8 else ''}. The cell's files now hold the retrained values "
              "(`git diff` shows them); eval.json was scored on the earlier weights: re-evaluate with "
              f"`mhc-bench cell {cell_id} --force`.")
    shutil.rmtree(scratch, ignore_errors=True)
    with contextlib.suppress(OSError):
        scratch.parent.rmdir()  # .regenerate/, unless another cell is being regenerated
    return 0


def run(args: argparse.Namespace) -> int:
    from mhc_bench.errors import UserError
    from mhc_bench.paths import PROJECT_ROOT
    from mhc_bench.workflow.grid import final_file, load_profile, profile_cells, profile_path, results_root
    from mhc_bench.workflow.snakerun import project_lock, run_snakemake

    if args.force and args.keep_weights:
        raise UserError("--force retrains into the cell folder, --keep-weights beside it: choose one")
    profile = find_profile(args.cell_id, args.profile)
    config = load_profile(profile)
    cell = profile_cells(profile)[args.cell_id]
    workdir = Path(args.directory or PROJECT_ROOT).resolve()
    if args.keep_weights:
        with project_lock(f"mhc-bench cell {args.cell_id} --keep-weights", workdir):
            return regenerate_weights(config, cell, args.cell_id, workdir)
    target = f"{results_root(config)}/cells/{args.cell_id}/{final_file(config, cell)}"
    extra = ["--forcerun", "train", "evaluate"] if args.force else []
    extra += ["--dry-run"] if args.dry_run else []
    cell_dir = workdir / results_root(config) / "cells" / args.cell_id
    before = (lambda: empty_cell_folder(cell_dir)) if args.force and not args.dry_run else None
    return run_snakemake(f"mhc-bench cell {args.cell_id}", profile_path(profile), results_root(config),
                         [target], args.cores, extra, workdir, config=config, before=before)
