"""The tracking module: one URI rule, race-free store creation, relocatable stores, resume logging."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from mhc_bench import tracking
from mhc_bench.paths import PROJECT_ROOT


def test_uri_precedence_is_config_then_environment_then_the_store_next_to_the_cells(monkeypatch) -> None:
    monkeypatch.chdir(PROJECT_ROOT)
    monkeypatch.delenv(tracking.ENV_URI, raising=False)
    default = tracking.resolve_uri(None, PROJECT_ROOT / "results" / "quick")
    assert default == "sqlite:///results/quick/mlflow.db"  # workdir-relative: no machine path
    monkeypatch.setenv(tracking.ENV_URI, "http://server:5000")
    assert tracking.resolve_uri(None, PROJECT_ROOT / "results" / "quick") == "http://server:5000"
    assert tracking.resolve_uri("sqlite:///elsewhere.db", Path("x")) == "sqlite:///elsewhere.db"


def _open_new_store(uri: str) -> str:
    return tracking.ensure_experiment(uri, "race")


@pytest.mark.slow
def test_two_processes_creating_a_new_store_at_once_both_succeed(tmp_path: Path) -> None:
    """Unlocked, alembic's schema migration fails in one of them (_alembic_tmp_experiments)."""
    for attempt in range(2):
        uri = f"sqlite:///{tmp_path / f'store{attempt}' / 'mlflow.db'}"
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            ids = pool.map(_open_new_store, [uri, uri])
        assert ids[0] == ids[1]


def test_a_store_under_the_workdir_has_relative_paths_and_survives_a_move(tmp_path, monkeypatch) -> None:
    """A committed mlflow.db must not name this machine's folders; a run's artifacts are its cell
    folder, so they stay reachable after the folder is copied elsewhere (a clone)."""
    import shutil

    first = tmp_path / "first"
    cell = first / "results" / "cells" / "cell-a"
    cell.mkdir(parents=True)
    (cell / "metrics.json").write_text("{}")
    monkeypatch.chdir(first)
    uri = tracking.sqlite_uri(first / "results" / "mlflow.db")
    assert uri == "sqlite:///results/mlflow.db"
    ref = tracking.start_run(uri, "exp", "cell-a", {"cell_id": "cell-a"}, {"model.d_model": 8},
                             artifact_dir=cell)
    tracking.log_artifacts(ref, [cell / "metrics.json"])  # nothing to copy: the folder is the root
    con = sqlite3.connect(first / "results" / "mlflow.db")
    paths = [r[0] for r in con.execute("SELECT artifact_location FROM experiments")]
    uris = [r[0] for r in con.execute("SELECT artifact_uri FROM runs")]
    con.close()
    assert uris == ["results/cells/cell-a"]
    assert paths and not any(str(tmp_path) in p for p in paths + uris), paths + uris
    clone = tmp_path / "clone"
    shutil.copytree(first, clone)
    shutil.rmtree(first)
    monkeypatch.chdir(clone)
    listed = tracking.client(uri).list_artifacts(ref.run_id)
    assert [a.path for a in listed] == ["metrics.json"]
    assert not (clone / "results" / "mlartifacts").exists()


def test_the_logger_drops_steps_its_run_already_holds(tmp_path: Path) -> None:
    """A resumed cell replays the steps after its last checkpoint (a cell killed before its first
    checkpoint replays them all): each point is logged once."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ref = tracking.start_run(uri, "exp", "cell", {}, {})
    tracking.log_metrics(ref, {"train/loss": 2.0}, 20)  # logged before the kill (step 20)
    logger = tracking.make_logger(ref)  # resumed from the checkpoint at step 15
    for step in (16, 20, 21):
        logger.log_metrics({"train/loss": 1.0, "val/loss": 3.0}, step=step)
    client = tracking.client(uri)
    assert [m.step for m in client.get_metric_history(ref.run_id, "train/loss")] == [20, 21]
    assert [m.step for m in client.get_metric_history(ref.run_id, "val/loss")] == [16, 20, 21]
    logger.finalize("success")  # Lightning's end of fit: the run stays open until the cell's files exist
    assert client.get_run(ref.run_id).info.status == "RUNNING"


def test_one_value_per_key_and_step_whatever_is_logged_again(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ref = tracking.start_run(uri, "exp", "cell", {}, {})
    assert tracking.log_points(ref, {("a", 1): 1.0, ("a", 2): 2.0, ("b", 1): 5.0}) == 3
    assert tracking.log_points(ref, {("a", 1): 1.0, ("a", 2): 2.0}) == 0  # same values: nothing written
    assert tracking.log_points(ref, {("a", 2): 2.5, ("b", 1): float("nan")}) == 1  # replaced; NaN skipped
    client = tracking.client(uri)
    assert [(m.step, m.value) for m in client.get_metric_history(ref.run_id, "a")] == [(1, 1.0), (2, 2.5)]
    run = client.get_run(ref.run_id)
    assert run.data.metrics == {"a": 2.5, "b": 5.0}  # latest values follow the replacement


@pytest.mark.parametrize("status", ["FINISHED", "FAILED"])
def test_runs_end_with_a_status(tmp_path: Path, status: str) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ref = tracking.start_run(uri, "exp", "cell", {}, {})
    tracking.end_run(ref, status)
    assert tracking.client(uri).get_run(ref.run_id).info.status == status
