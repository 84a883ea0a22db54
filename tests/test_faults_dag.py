"""The kill matrix through the whole DAG (``mhc-bench reproduce``, what ``make reproduce`` runs).

A toy profile (one mHC cell of d32, one block, 40 steps of a byte tokenizer on the fixture
corpus; no evaluation, no bench) is run once uninterrupted, and once more with the whole
process group SIGKILLed at each kill point in turn, resuming after each with the same
command: while the MLflow store is created, before the cell's first checkpoint, right after
the checkpoint of a validation step, inside finalisation. The resumed result must equal the
uninterrupted one (weights bit for bit), with one MLflow run holding exactly what the cell's
files hold. The same module checks the repairs a user reaches with one command: truncated
weights, ``cell --force``, ``cell --keep-weights``, re-probing, a deleted cell folder, a
read-only results folder, a corrupt metrics.json, and that the runs' artifacts open from a
clone. (The evaluation kill point needs the lm-eval task suite, hence the network.)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from fault_tools import CORPUS, assert_same_cell, checkpoint_step, env, metric_rows, run_ok, run_until
from store_checks import assert_mirrors_cells, snapshot

from mhc_bench import cellfolder as cf
from mhc_bench.paths import PROJECT_ROOT

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "mhc_bench.cli"]


def toy_profile(path: Path, **overrides: Any) -> Path:
    profile = {
        "profile": "toy",
        "grid": [{"variant": ["mhc"], "n": [2], "scale": ["d32-b1"], "seed": [1]}],
        "scales": {"d32-b1": {"d_model": 32, "n_layer": 1, "n_head": 2}},
        "model": {"seq_len": 32},
        "data": {"corpus": str(CORPUS), "tokenizer": "char"},
        "train": {"steps": 40, "batch_size": 4, "warmup_steps": 2, "probe_every": 2, "val_every": 20,
                  "val_batches": 2, "ckpt_every": 10},
        "eval": {"enabled": False},
        "bench": {"enabled": False},
        **overrides,
    }
    path.write_text(yaml.safe_dump(profile))
    return path


def reproduce(profile: Path, workdir: Path) -> list[str]:
    return [*CLI, "reproduce", "--profile", str(profile), "--directory", str(workdir), "--cores", "1"]


def run_cell(profile: Path, workdir: Path, cell: str, *args: str) -> list[str]:
    """``mhc-bench cell``: the same checks, repairs and DAG as reproduce, without the report."""
    return [*CLI, "cell", cell, "--profile", str(profile), "--directory", str(workdir), "--cores", "1", *args]


def the_cell(workdir: Path) -> Path:
    (cell,) = (workdir / "results" / "toy" / "cells").iterdir()
    return cell


@pytest.fixture(scope="module")
def profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return toy_profile(tmp_path_factory.mktemp("profile") / "toy.yaml")


@pytest.fixture(scope="module")
def clean(profile: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run's working directory."""
    workdir = tmp_path_factory.mktemp("clean")
    run_ok(reproduce(profile, workdir))
    return workdir


def test_the_kill_matrix_resumes_to_the_uninterrupted_result(profile: Path, clean: Path,
                                                             tmp_path: Path) -> None:
    work = tmp_path / "work"
    results = work / "results" / "toy"
    db, cells = results / "mlflow.db", results / "cells"
    seen: dict[str, int] = {}

    def cell_file(name: str | Path) -> Path | None:
        found = list(cells.glob(f"*/{name}")) if cells.is_dir() else []
        return found[0] if found else None

    def checkpoint() -> Path:
        return cell_file(cf.CHECKPOINT) or cells / "none"

    kill_points = {
        "store creation": lambda: (results / ".mlflow.db.creating").exists() or db.exists(),
        "before the first checkpoint": lambda: metric_rows(db) > 0 and not checkpoint().exists(),
        "after the checkpoint of a validation step": lambda: checkpoint_step(checkpoint(), seen) == 20,
        "inside finalisation": lambda: cell_file(cf.MODEL) is not None and cell_file(cf.METRICS) is None,
    }
    for what, when in kill_points.items():  # inside the store's migration, else at once
        run_until(reproduce(profile, work), when, what=what, after=0.3 if what == "store creation" else 0)
        assert cell_file(cf.METRICS) is None, f"the cell finished before the kill point {what}"
    run_ok(reproduce(profile, work))

    assert_same_cell(the_cell(work), the_cell(clean))
    assert_mirrors_cells(db, [the_cell(work)])
    assert (work / "report" / "toy" / "report.md").exists()
    again = run_ok([*reproduce(profile, work), "--dry-run"])
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.network
def test_a_kill_inside_evaluation_logs_no_score_twice(tmp_path: Path) -> None:
    profile = toy_profile(tmp_path / "toy.yaml", eval={"tasks": ["mhcb_gsm"], "limit": 4, "batch_size": 4})
    work = tmp_path / "work"
    logs = work / "results" / "toy" / "logs" / "eval"
    run_until(reproduce(profile, work), lambda: logs.is_dir() and any(logs.iterdir()), timeout=900,
              what="evaluation started")
    run_ok(reproduce(profile, work))
    cell = the_cell(work)
    assert json.loads((cell / cf.EVAL).read_text())["complete"]
    assert_mirrors_cells(work / "results" / "toy" / "mlflow.db", [cell])


def _copy(clean: Path, tmp_path: Path) -> Path:
    work = tmp_path / "work"
    shutil.copytree(clean, work, symlinks=True)
    shutil.rmtree(work / ".snakemake", ignore_errors=True)
    return work


def test_truncated_weights_are_noticed_and_regenerated(profile: Path, clean: Path, tmp_path: Path) -> None:
    """Defect 6: a truncated model file used to pass for a finished cell ("Nothing to be done")."""
    work = _copy(clean, tmp_path)
    cell = the_cell(work)
    weights = cell / cf.MODEL
    weights.write_bytes(weights.read_bytes()[:1000])
    done = run_ok(run_cell(profile, work, cell.name))
    assert "metrics.json.corrupt" in done.stderr and "truncated" in done.stderr
    assert_same_cell(cell, the_cell(clean))
    assert_mirrors_cells(work / "results" / "toy" / "mlflow.db", [cell])


def test_force_retrains_and_probe_logs_nothing_twice(profile: Path, clean: Path, tmp_path: Path) -> None:
    """Defect 7: --force re-finalised from last.ckpt and logged final/* again; so did every probe."""
    work = _copy(clean, tmp_path)
    cell = the_cell(work)
    db = work / "results" / "toy" / "mlflow.db"
    old_run = json.loads((cell / cf.METRICS).read_text())["mlflow_run_id"]
    (cell / "marker").write_text("from the earlier training")
    run_ok(run_cell(profile, work, cell.name, "--force"))
    assert not (cell / "marker").exists()  # trained from nothing
    metrics = json.loads((cell / cf.METRICS).read_text())
    assert metrics["mlflow_run_id"] != old_run and list(snapshot(db)) == [cell.name]  # the old run is gone
    assert_same_cell(cell, the_cell(clean))
    for _ in range(2):
        run_ok([*CLI, "probe", "--cell", str(cell)], work)
    assert_mirrors_cells(db, [cell])


def test_a_deleted_cell_folder_leaves_one_run(profile: Path, clean: Path, tmp_path: Path) -> None:
    """Defect 9: the old run stayed beside the new one ("2 runs share this name")."""
    work = _copy(clean, tmp_path)
    name = the_cell(work).name
    shutil.rmtree(the_cell(work))
    run_ok(run_cell(profile, work, name))
    db = work / "results" / "toy" / "mlflow.db"
    assert list(snapshot(db)) == [the_cell(work).name]
    assert_mirrors_cells(db, [the_cell(work)])


def test_keep_weights_regenerates_a_committed_cell_bit_for_bit(profile: Path, clean: Path,
                                                               tmp_path: Path) -> None:
    """Committed results carry no weights: one command retrains them, metrics.json untouched."""
    work = _copy(clean, tmp_path)
    cell = the_cell(work)
    for name in (cf.MODEL, cf.TOKENIZER, "run.json"):
        (cell / name).unlink()
    shutil.rmtree(cell / "checkpoints")
    metrics = (cell / cf.METRICS).read_bytes()
    before = snapshot(work / "results" / "toy" / "mlflow.db")
    failed = subprocess.run([*CLI, "probe", "--cell", str(cell)], cwd=work, env=env(), capture_output=True,
                            text=True)
    assert failed.returncode == 2 and "--keep-weights" in failed.stderr
    done = run_ok(run_cell(profile, work, cell.name, "--keep-weights"))
    assert "matches the committed metrics bit for bit" in done.stdout
    assert (cell / cf.METRICS).read_bytes() == metrics
    assert (cell / cf.MODEL).read_bytes() == (the_cell(clean) / cf.MODEL).read_bytes()
    assert not (work / "results" / "toy" / ".regenerate").exists()
    assert snapshot(work / "results" / "toy" / "mlflow.db") == before  # the scratch run went elsewhere
    run_ok([*CLI, "probe", "--cell", str(cell)], work)


def test_a_damaged_metrics_file_is_called_corrupt_by_the_report(profile: Path, clean: Path,
                                                                 tmp_path: Path) -> None:
    """Defect 9: `make report` renamed a corrupt file and then called the cell "not trained"."""
    from mhc_bench.report.cells import read_cell
    from mhc_bench.workflow.snakerun import quarantine_broken_outputs

    work = _copy(clean, tmp_path)
    cell = the_cell(work)
    (cell / cf.METRICS).write_text('{"cell_id": "trunc')
    assert {p.kind for p in read_cell(cell).problems} >= {"unreadable metrics.json"}
    report = run_ok([*reproduce(profile, work), "--report-only"])
    assert not (cell / f"{cf.METRICS}.corrupt").exists(), report.stderr  # make report repairs nothing
    quarantine_broken_outputs(cell.parent)  # what the next `make reproduce` does first
    kinds = {p.kind for p in read_cell(cell).problems}
    assert "corrupt metrics.json" in kinds and "no metrics.json" not in kinds


def test_a_read_only_results_folder_is_one_line(profile: Path, clean: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 9: Snakemake's ProtectedOutputException. (As root permissions are not enforced, so the
    check's view of them is what the test sets.)"""
    import os

    from mhc_bench.errors import UserError
    from mhc_bench.workflow import snakerun
    from mhc_bench.workflow.grid import load_profile, results_root

    work = _copy(clean, tmp_path)
    locked = the_cell(work) / cf.METRICS
    real_access = os.access
    monkeypatch.setattr(snakerun.os, "access", lambda p, mode: Path(p) != locked and real_access(p, mode))
    config = load_profile(profile)
    with pytest.raises(UserError, match="is read-only") as err:
        snakerun.run_snakemake("test", profile, results_root(config), [], "1", [], work, config=config)
    assert str(locked) in str(err.value) and "chmod -R u+w" in str(err.value)


def test_every_committed_run_opens_its_artifacts_from_a_clone(clean: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 25: the runs pointed at results/<p>/mlartifacts, which is not committed. Now a run's
    artifact root is its cell folder: copy only what .gitignore lets through for committed results
    (results/quick), and every run lists files that exist."""
    from mhc_bench import mlstore, tracking

    source = clean / "results" / "toy"
    files = [p.relative_to(source) for p in source.rglob("*") if p.is_file()]
    names = "\n".join(f"results/quick/{p}" for p in files)
    ignored = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], input=names, text=True,
                             capture_output=True, cwd=PROJECT_ROOT).stdout.split()
    clone = tmp_path / "clone"
    kept = [p for p in files if f"results/quick/{p}" not in ignored]
    for rel in kept:
        (clone / "results" / "toy" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / rel, clone / "results" / "toy" / rel)
    assert not any(p.name in (cf.MODEL, "run.json") or "checkpoints" in p.parts for p in kept)
    monkeypatch.chdir(clone)
    db = Path("results/toy/mlflow.db")
    mlstore.forget_engines(db)
    runs = snapshot(db)
    assert runs
    for name, run in runs.items():
        assert run["artifact_uri"] == f"results/toy/cells/{name}"
        listed = {a.path for a in tracking.client(f"sqlite:///{db}").list_artifacts(run["run_id"])}
        assert {cf.METRICS, cf.CONFIG, cf.HISTORY, cf.GAINS, "gains_per_layer.png",
                "gains_over_steps.png"} <= listed
        assert all((Path(run["artifact_uri"]) / path).exists() for path in listed)
