"""Kill it anywhere, corrupt anything: the suite recovers, or says so in one line, and loses nothing.

Every kill is a real SIGKILL of a real process (the whole process group for the DAG), timed
by what the process has written so far, on toy cells (d32, one block, a few dozen steps of a
byte tokenizer over the fixture corpus). After each kill the same command runs again, and
the result must equal an uninterrupted run's (weights bit for bit, every number but the
timings) with exactly one MLflow run per cell and one value per (run, key, step) that
equals what the cell's files say (``store_checks.assert_mirrors_cells``).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from fault_tools import (
    CORPUS,
    assert_same_cell,
    cell_config,
    checkpoint_step,
    env,
    metric_rows,
    run_ok,
    run_until,
    train_cmd,
)
from store_checks import assert_mirrors_cells, snapshot

from mhc_bench import cellfolder as cf


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted toy cell every killed one must equal."""
    root = tmp_path_factory.mktemp("reference")
    config = root / "cell.yaml"
    config.write_text(yaml.safe_dump(cell_config(root / "store")))
    run_ok(train_cmd(config, root / "cell"))
    return root / "cell"


# ----------------------------------------------------------------------------- the store
def test_a_kill_while_the_store_is_created_leaves_no_half_built_store(tmp_path: Path) -> None:
    """Defect 1: killed within the schema migration (0.2-0.5 s after the file appeared, here), the
    store used to fail every later open ("table ... already exists"). It is built in a temporary
    file and renamed now."""
    from mhc_bench import tracking

    code = "import sys; from mhc_bench import tracking; tracking.ensure_experiment(sys.argv[1], 'x')"
    for after in (0.2, 0.4):
        db = tmp_path / f"s{after}" / "mlflow.db"
        creating = db.with_name(f".{db.name}.creating")
        run_until([sys.executable, "-c", code, f"sqlite:///{db}"],
                  lambda c=creating, d=db: c.exists() or d.exists(), what="store creation", after=after)
        assert not db.exists() or snapshot(db) == {}  # nothing, or a complete store
        assert tracking.ensure_experiment(f"sqlite:///{db}", "x")  # the next run just works


def test_a_half_built_store_without_runs_is_rebuilt_silently(tmp_path: Path) -> None:
    """A store left half-built by an earlier version's kill holds nothing: it is created afresh."""
    import sqlalchemy
    from mlflow.store.db.base_sql_model import Base

    db = tmp_path / "mlflow.db"
    engine = sqlalchemy.create_engine(f"sqlite:///{db}")
    Base.metadata.tables["experiments"].create(engine)  # one table, no alembic revision
    engine.dispose()
    from mhc_bench import tracking

    assert tracking.ensure_experiment(f"sqlite:///{db}", "x")
    assert list(snapshot(db)) == []


def _store_with_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[Path]]:
    """Two finished toy cells in results/p/cells of ``tmp_path`` (the working directory)."""
    from mhc_bench.cellconfig import parse_cell_config
    from mhc_bench.train.runner import train_cell

    monkeypatch.chdir(tmp_path)
    cells = []
    for seed in (1, 2):
        raw = cell_config(tmp_path, steps=10, seed=seed, ckpt_every=5, val_every=5)
        raw["tracking"] = {"tracking_uri": "sqlite:///results/p/mlflow.db", "experiment": "p"}
        raw["profile"] = "p"
        cfg = parse_cell_config(raw)
        from mhc_bench.cellconfig import cell_id

        out = tmp_path / "results" / "p" / "cells" / cell_id(cfg)
        train_cell(cfg, out)
        cells.append(out)
    return tmp_path / "results" / "p" / "mlflow.db", cells


def _profile(tmp_path: Path) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({
        "profile": "p", "grid": [{"variant": ["mhc"], "n": [2], "scale": ["toy"], "seed": [1, 2]}],
        "scales": {"toy": {"d_model": 32, "n_layer": 1, "n_head": 2}},
        "data": {"corpus": str(CORPUS), "tokenizer": "char"}, "eval": {"enabled": False},
        "bench": {"enabled": False}}))
    return path


def test_a_corrupt_store_is_one_line_and_rebuilds_from_the_cells_losing_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 8: a store truncated to half was silent, then a SQLAlchemy traceback; deleting it lost
    every cell's history. Now: one line naming the rebuild command, which restores every run."""
    db, cells = _store_with_runs(tmp_path, monkeypatch)
    assert_mirrors_cells(db, cells)
    before = snapshot(db)
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])
    profile = str(_profile(tmp_path))
    cli = [sys.executable, "-m", "mhc_bench.cli"]

    for args in (["store", "check", "--profile", profile, "--directory", str(tmp_path)],
                 ["reproduce", "--profile", profile, "--directory", str(tmp_path), "--cores", "1"],
                 ["train", "--config", str(cells[0] / cf.CONFIG), "--out", str(tmp_path / "other")]):
        failed = subprocess.run([*cli, *args], capture_output=True, text=True, env=env(), cwd=tmp_path)
        assert failed.returncode == 2, failed.stderr[-2000:]
        lines = failed.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in failed.stderr, failed.stderr[-2000:]
        assert "mlflow.db" in lines[0] and "mhc-bench store rebuild --profile p" in lines[0]

    rebuilt = run_ok([*cli, "store", "rebuild", "--profile", profile, "--directory", str(tmp_path)], tmp_path)
    assert "from 2 finished cell(s)" in rebuilt.stdout
    assert list(db.parent.glob("mlflow.db.replaced-*"))  # the damaged file is kept
    after = snapshot(db)
    assert after == before  # same run ids, params, tags, points and artifact roots
    assert_mirrors_cells(db, cells)
    from mhc_bench import mlstore, tracking

    mlstore.forget_engines(db)  # this process's pooled connections still read the replaced file
    listed = {a.path for a in tracking.client("sqlite:///results/p/mlflow.db").list_artifacts(
        after[cells[0].name]["run_id"])}
    assert {cf.METRICS, cf.CONFIG, cf.HISTORY, cf.GAINS, cf.MODEL} <= listed


# ----------------------------------------------------------------------------- one cell
def test_a_kill_before_the_first_checkpoint_duplicates_nothing(tmp_path: Path, reference: Path) -> None:
    """Defect 4: the replay filter applied only with a checkpoint; 74 duplicate rows after a kill."""
    config = tmp_path / "cell.yaml"
    config.write_text(yaml.safe_dump(cell_config(tmp_path / "store")))
    out, db = tmp_path / "cell", tmp_path / "store" / "mlflow.db"
    run_until(train_cmd(config, out), lambda: metric_rows(db) > 0, what="first MLflow points")
    assert not (out / cf.CHECKPOINT).exists()
    run_ok(train_cmd(config, out))
    assert_same_cell(out, reference)
    assert_mirrors_cells(db, [out])


def test_a_kill_after_a_checkpoint_at_a_validation_step_loses_no_validation(tmp_path: Path,
                                                                             reference: Path) -> None:
    """Defect 5: last.ckpt was written before that step's validation, and Lightning skipped the
    validation on resume: the point was lost from history.json and MLflow."""
    config = tmp_path / "cell.yaml"
    config.write_text(yaml.safe_dump(cell_config(tmp_path / "store")))
    out, seen = tmp_path / "cell", {}
    run_until(train_cmd(config, out), lambda: checkpoint_step(out / cf.CHECKPOINT, seen) == 20,
              what="the checkpoint of step 20 (a validation step)")
    assert not (out / cf.METRICS).exists()
    run_ok(train_cmd(config, out))
    history = json.loads((out / cf.HISTORY).read_text())
    assert [h["step"] for h in history if "val_loss" in h] == [20, 40]
    assert_same_cell(out, reference)
    assert_mirrors_cells(tmp_path / "store" / "mlflow.db", [out])


def test_a_kill_inside_finalisation_never_leaves_the_run_finished(tmp_path: Path, reference: Path) -> None:
    """Defect 9: Lightning ended the run FINISHED when fit returned, before the cell's files existed."""
    config = tmp_path / "cell.yaml"
    config.write_text(yaml.safe_dump(cell_config(tmp_path / "store")))
    out, db = tmp_path / "cell", tmp_path / "store" / "mlflow.db"
    run_until(train_cmd(config, out), lambda: (out / cf.MODEL).exists(), what="the weights written")
    assert not (out / cf.METRICS).exists()
    (status,) = {s for _, s in _statuses(db)}
    assert status == "RUNNING"
    run_ok(train_cmd(config, out))
    assert [s for _, s in _statuses(db)] == ["FINISHED"]
    assert_same_cell(out, reference)
    assert_mirrors_cells(db, [out])


def _statuses(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT run_uuid, status FROM runs").fetchall()


def test_two_trainers_of_one_cell_folder_one_refuses(tmp_path: Path) -> None:
    """Defect 9: both used to train and create two MLflow runs."""
    config = tmp_path / "cell.yaml"
    long = dict(steps=5000, probe_every=1000, val_every=1000, ckpt_every=1000)
    config.write_text(yaml.safe_dump(cell_config(tmp_path / "store", **long)))
    out = tmp_path / "cell"
    first = subprocess.Popen(train_cmd(config, out), env=env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "run.json").exists():
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        second = subprocess.run(train_cmd(config, out), env=env(), capture_output=True, text=True)
        assert first.poll() is None, "the first trainer finished before the second asked: make it longer"
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert second.returncode == 2 and "being trained into" in second.stderr, second.stderr[-2000:]
    assert len(second.stderr.strip().splitlines()) == 1
    assert len(_statuses(tmp_path / "store" / "mlflow.db")) == 1


def test_a_full_disk_inside_finalisation_is_one_line_and_the_run_is_not_finished(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import errno

    from mhc_bench import cli
    from mhc_bench.train import finalize

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(finalize.cf, "write_gains", full)
    config = tmp_path / "cell.yaml"
    config.write_text(yaml.safe_dump(cell_config(tmp_path / "store", steps=10, val_every=5)))
    assert cli.main(["train", "--config", str(config), "--out", str(tmp_path / "cell")]) == 2
    err = capsys.readouterr().err  # Lightning's INFO lines, then the one error line
    last = err.strip().splitlines()[-1]
    assert last.startswith("mhc-bench train: error: no space left") and "Traceback" not in err
    assert [s for _, s in _statuses(tmp_path / "store" / "mlflow.db")] == ["FAILED"]
