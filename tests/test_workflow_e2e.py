"""The smoke profile end to end through real Snakemake, then reruns.

One module-scoped run (a few minutes on 2 cores): every stage of the product
(data, task suite, MLflow store, training, lm-eval, bench, report) at toy size.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mhc_bench.paths import PROJECT_ROOT
from mhc_bench.workflow.grid import profile_cells

pytestmark = [pytest.mark.slow, pytest.mark.network]
SMOKE = PROJECT_ROOT / "workflows" / "config" / "smoke.yaml"


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(PROJECT_ROOT / "Snakefile"),
           "--directory", str(workdir), "--configfile", str(SMOKE), "--cores", "2", *args]
    # In-process tests may have left MLFLOW_TRACKING_URI behind (mlflow.set_tracking_uri sets
    # it); the workflow must use the profile's own store.
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("smoke")
    result = snakemake(workdir)
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir


def test_every_cell_has_metrics_and_evaluated_cells_have_eval(smoke_run: Path) -> None:
    cells = profile_cells("smoke")
    evaluated = {cid for cid, cell in cells.items() if cell["grid"]["evaluate"]}
    assert evaluated and evaluated != set(cells)  # smoke has both kinds of block
    for cid in cells:
        folder = smoke_run / "results" / "smoke" / "cells" / cid
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["cell_id"] == cid and metrics["status"] == "completed"
        if cid in evaluated:
            evaluation = json.loads((folder / "eval.json").read_text())
            assert evaluation["complete"] and evaluation["results"]
        else:  # the profile skips evaluation here: the DAG must not have run it
            assert not (folder / "eval.json").exists()


def test_mlflow_has_one_run_per_cell(smoke_run: Path) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{smoke_run / 'results' / 'smoke' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("smoke")
    runs = client.search_runs([experiment.experiment_id])
    names = sorted(r.info.run_name for r in runs)
    cells = profile_cells("smoke")
    assert names == sorted(cells)
    for run in runs:  # evaluated cells carry their scores; the others none
        has_scores = any(k.startswith("eval/") for k in run.data.metrics)
        assert has_scores == cells[run.info.run_name]["grid"]["evaluate"], run.info.run_name


def test_report_lists_every_cell(smoke_run: Path) -> None:
    report = (smoke_run / "report" / "smoke" / "report.md").read_text()
    summary = pd.read_csv(smoke_run / "results" / "smoke" / "summary.csv")
    assert sorted(summary["cell_id"]) == sorted(profile_cells("smoke"))
    for cid in profile_cells("smoke"):
        assert re.search(rf"\| {re.escape(cid)} +\|", report), cid  # its row of the cells table
    for section in ("Verdict summary", "Claims in full", "Overhead", "Stability", "Accuracy", "Ablation"):
        assert section in report
    assert (smoke_run / "report" / "smoke" / "claims.csv").exists()
    assert (smoke_run / "results" / "smoke" / "bench" / "bench.json").exists()
    pngs = list((smoke_run / "report" / "smoke" / "plots").glob("*.png"))
    assert len(pngs) >= 4 and all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)


def test_second_run_does_nothing_and_one_deleted_eval_reruns_one_job(smoke_run: Path) -> None:
    again = snakemake(smoke_run, "--dry-run")
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr

    victim = next(iter(profile_cells("smoke")))
    (smoke_run / "results" / "smoke" / "cells" / victim / "eval.json").unlink()
    plan = snakemake(smoke_run, "--dry-run", "--quiet", "rules")
    jobs = {}
    for line in plan.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            jobs[parts[0]] = int(parts[1])
    assert jobs.get("evaluate") == 1 and "train" not in jobs
    rerun = snakemake(smoke_run)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert (smoke_run / "results" / "smoke" / "cells" / victim / "eval.json").exists()


def test_report_only_trains_nothing(smoke_run: Path) -> None:
    result = snakemake(smoke_run, "--config", "report_only=True", "--forcerun", "report", "--", "report")
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "rule train" not in log and "rule evaluate" not in log and "rule report" in log


def test_snakemake_html_report_has_the_plots(smoke_run: Path) -> None:
    page = smoke_run / "snakemake-report.html"
    result = snakemake(smoke_run, "--report", str(page))
    assert result.returncode == 0, result.stderr[-3000:]
    text = page.read_text(errors="replace")
    assert "composite_gain_per_layer" in text and "Claims scorecard" in text


def _text_files(root: Path) -> list[Path]:
    kinds = {".json", ".yaml", ".csv", ".md", ".html", ".tsv", ".db"}
    return [p for p in root.rglob("*") if p.is_file() and p.suffix in kinds and ".snakemake" not in p.parts
            and "logs" not in p.parts]


def test_results_are_relocatable_and_a_copy_regenerates_the_same_report(smoke_run: Path, tmp_path) -> None:
    """No file the product writes names the folder it ran in (mlflow.db included), so a clone
    elsewhere rebuilds byte-identical tables from the copied results."""
    import shutil

    marker = str(smoke_run.resolve()).encode()
    leaks = [p for p in _text_files(smoke_run / "results") + _text_files(smoke_run / "report")
             if marker in p.read_bytes()]
    assert leaks == [], leaks
    clone = tmp_path / "clone"
    shutil.copytree(smoke_run / "results", clone / "results")
    names = ("report.md", "claims.csv")
    before = {name: (smoke_run / "report" / "smoke" / name).read_bytes() for name in names}
    rebuilt = snakemake(clone, "--config", "report_only=True", "--forcerun", "report", "--", "report")
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    after = {name: (clone / "report" / "smoke" / name).read_bytes() for name in before}
    assert after == before
    summary = (clone / "results" / "smoke" / "summary.csv").read_bytes()
    assert summary == (smoke_run / "results" / "smoke" / "summary.csv").read_bytes()
