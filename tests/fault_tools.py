"""Killing real processes at chosen moments, and comparing what they leave with a clean run.

Shared by ``test_faults.py`` (one cell, ``mhc-bench train``) and ``test_faults_dag.py`` (the
whole DAG, ``mhc-bench reproduce``): a kill point is a condition on what the process has
written so far, polled every 2 ms; the process group is SIGKILLed as soon as it holds.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mhc_bench import cellfolder as cf

CORPUS = Path(__file__).parent / "fixtures" / "corpus"
# Measured by the run, not by the model: never compared between a killed and a clean run.
TIMING = {"wall_time_s", "tokens_per_s", "step_time_ms", "first_step_s", "peak_mem_mb", "mlflow_run_id",
          "mlflow_tracking_uri", "provenance"}
HISTORY_TIMING = {"tokens_per_s", "step_time_ms", "peak_mem_mb"}


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}


def cell_config(store: Path, **train: Any) -> dict[str, Any]:
    settings = dict(steps=40, batch_size=4, lr=3e-3, warmup_steps=2, probe_every=2, val_every=20,
                    val_batches=2, ckpt_every=10, num_threads=1, seed=1)
    settings.update(train)
    return {"model": dict(d_model=32, n_layer=1, n_head=2, seq_len=32, mixing="mhc", n_streams=2),
            "data": {"corpus": str(CORPUS), "tokenizer": "char"}, "train": settings,
            "tracking": {"tracking_uri": f"sqlite:///{store / 'mlflow.db'}"}}


def train_cmd(config: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "mhc_bench.cli", "train", "--config", str(config), "--out", str(out)]


def run_until(cmd: list[str], when: Callable[[], bool], cwd: Path | None = None, timeout: float = 240,
              what: str = "", after: float = 0.0) -> None:
    """Start ``cmd`` in its own process group and SIGKILL the group ``after`` seconds after ``when()``
    first holds."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while not when():
            if proc.poll() is not None:
                err = proc.stderr.read().decode()[-3000:] if proc.stderr else ""
                pytest.fail(f"the process ended (rc {proc.returncode}) before the kill point {what}: {err}")
            assert time.monotonic() < deadline, f"kill point {what} never came"
            time.sleep(0.002)
        time.sleep(after)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stderr:
            proc.stderr.close()


def run_ok(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def metric_rows(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=0.05) as con:
            return int(con.execute("SELECT count(*) FROM metrics").fetchone()[0])
    except sqlite3.DatabaseError:
        return 0


def checkpoint_step(path: Path, seen: dict[str, int]) -> int:
    """The global step of ``path`` (loaded only when it changed since the last look)."""
    import torch

    try:
        stamp = path.stat().st_mtime_ns
    except FileNotFoundError:
        return -1
    if seen.get("stamp") != stamp:
        try:
            seen["step"] = int(torch.load(path, weights_only=True, map_location="cpu")["global_step"])
            seen["stamp"] = stamp
        except Exception:  # caught mid-rename: look again
            return -1
    return seen["step"]


def assert_same_cell(cell: Path, reference: Path) -> None:
    """Same weights (bit for bit), same numbers and history (timings aside)."""
    a, b = json.loads((cell / cf.METRICS).read_text()), json.loads((reference / cf.METRICS).read_text())
    assert {k: v for k, v in a.items() if k not in TIMING} == {k: v for k, v in b.items() if k not in TIMING}
    assert (cell / cf.MODEL).read_bytes() == (reference / cf.MODEL).read_bytes()
    ha, hb = json.loads((cell / cf.HISTORY).read_text()), json.loads((reference / cf.HISTORY).read_text())
    strip = [[{k: v for k, v in e.items() if k not in HISTORY_TIMING} for e in h] for h in (ha, hb)]
    assert strip[0] == strip[1]
    assert (cell / cf.GAINS).read_text() == (reference / cf.GAINS).read_text()


