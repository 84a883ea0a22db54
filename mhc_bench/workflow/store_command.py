"""``mhc-bench store check|rebuild --profile P``: the profile's MLflow store, checked or rebuilt.

The cell files are the source of truth and the store mirrors them
(:mod:`mhc_bench.train.mirror`), so a lost or damaged store is rebuilt from them alone:
one run per finished cell, with its id from ``metrics.json``, its params from
``config.yaml``, its tags (the provenance ``metrics.json`` records; for cells written
before it did, whatever the old store still yields, else the grid's values), every
history point, the final metrics and the evaluation scores, its artifacts pointing at
the cell folder. The new store is built beside the old one and renamed over it; the old
file is kept as ``mlflow.db.replaced-<time>`` (``check`` first says what is wrong). Runs
of cells that have not finished are not rebuilt: such a cell starts a new run when it
resumes and logs its whole history when it finishes. Rebuilding a healthy store is
harmless too: it brings a store written by an earlier version in line with the files
(artifact roots in the cell folders, one value per point).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from mhc_bench.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["check", "rebuild"],
                        help="check: is the store healthy; rebuild: rebuild it from the cell files")
    parser.add_argument("--profile", default="quick", help="profile name or path to its YAML (default quick)")
    parser.add_argument("--directory", type=Path, default=None,
                        help="working directory holding results/ (default: the project root)")


def _base_tags(cfg: Any, metrics: Any) -> dict[str, str]:
    """Tags of a cell whose metrics.json predates the recorded provenance (the grid's values)."""
    m, t = cfg.model, cfg.train
    return {"cell_id": metrics.cell_id, "config_hash": metrics.config_hash, "variant": m.variant,
            "n": str(m.n_streams), "seed": str(t.seed), "d_model": str(m.d_model), "n_layer": str(m.n_layer),
            "profile": cfg.profile or "", "name": cfg.name or ""}


def salvage_tags(db: Path, run_id: str | None) -> dict[str, str]:
    """A run's own tags from the old store, as far as it can still be read (else nothing)."""
    import sqlite3

    from mhc_bench import tracking

    if run_id is None or not db.exists():
        return {}
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = con.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (run_id,)).fetchall()
        finally:
            con.close()
    except sqlite3.DatabaseError:
        return {}
    return {k: v for k, v in rows
            if not k.startswith(("mlflow.", "eval_")) and k not in tracking.DERIVED_TAGS}


def rebuild_store(db: Path, cells_root: Path, experiment: str) -> tuple[int, Path | None]:
    """Rebuild the SQLite store ``db`` from the finished cells under ``cells_root`` (paths relative
    to the working directory); returns (runs rebuilt, where the old store was kept)."""
    from mhc_bench import cellfolder as cf
    from mhc_bench import mlstore, tracking
    from mhc_bench.cellconfig import flatten
    from mhc_bench.train import mirror

    building = db.with_name(f".{db.name}.rebuilding")
    mlstore.forget_engines(building)
    for leftover in (building, building.with_name(building.name + "-journal")):
        leftover.unlink(missing_ok=True)
    uri = tracking.sqlite_uri(building)
    count = 0
    folders = sorted(p for p in cells_root.iterdir() if p.is_dir()) if cells_root.is_dir() else []
    for cell_dir in folders:
        try:
            metrics = cf.read_metrics(cell_dir)
            cfg = cf.read_config(cell_dir)
        except cf.CellFileError as err:
            print(f"skipped {cell_dir.name}: {err.one_line()}", file=sys.stderr)
            continue
        if metrics is None or cfg is None:
            continue
        tags = metrics.provenance or salvage_tags(db, metrics.mlflow_run_id) or _base_tags(cfg, metrics)
        params = flatten(cfg.model_dump(mode="json", exclude={"tracking"}))
        ref = tracking.start_run(uri, metrics.mlflow_experiment or experiment, metrics.cell_id, tags, params,
                                 artifact_dir=cell_dir, run_id=metrics.mlflow_run_id)
        mirror.mirror_cell(ref, cell_dir)
        tracking.end_run(ref, "FINISHED")
        count += 1
    tracking.ensure_experiment(uri, experiment)  # the profile's experiment exists even with no cell
    mlstore.forget_engines(building)
    kept = None
    if db.exists():
        kept = db.with_name(f"{db.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
        mlstore.forget_engines(db)
        db.replace(kept)
    building.replace(db)
    building.with_name(building.name + ".lock").unlink(missing_ok=True)
    return count, kept


def run(args: argparse.Namespace) -> int:
    from mhc_bench import mlstore, tracking
    from mhc_bench.paths import PROJECT_ROOT
    from mhc_bench.workflow.grid import load_profile, results_root
    from mhc_bench.workflow.snakerun import project_lock

    config = load_profile(args.profile)
    workdir = Path(args.directory or PROJECT_ROOT)
    uri = tracking.resolve_uri(config["tracking_uri"], results_root(config))
    db = tracking.sqlite_path(uri)
    if db is None:
        raise UserError(f"the profile's MLflow store {uri} is not a SQLite file: check and rebuild it with "
                        "its server's own tools")
    import os

    os.chdir(workdir)  # result paths (and the store's artifact paths) are relative to it
    hint = f"mhc-bench store rebuild --profile {config['profile']}"
    if args.action == "check":
        if not db.exists():
            print(f"{db}: absent (created by the next run)")
            return 0
        mlstore.check_store(db, hint, repair_empty=False)
        print(f"{db}: healthy ({len(mlstore.running_runs(db))} run(s) marked RUNNING)")
        return 0
    with project_lock(f"mhc-bench store rebuild --profile {config['profile']}", workdir):
        count, kept = rebuild_store(db, results_root(config) / "cells", config["profile"])
    where = f"; the previous store is kept as {kept}" if kept else ""
    print(f"rebuilt {db} from {count} finished cell(s){where}")
    return 0
