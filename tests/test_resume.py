"""Kill a training process with SIGKILL after a checkpoint, resume it: same numbers, one MLflow run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from mhc_bench.cellconfig import cell_id, parse_cell_config
from mhc_bench.train.runner import train_cell

CORPUS = Path(__file__).parent / "fixtures" / "corpus"
STEPS = 120


def tiny(store: Path) -> dict[str, Any]:
    return {
        "model": dict(d_model=32, n_layer=2, n_head=2, seq_len=32, mixing="hc", n_streams=2),
        "data": {"corpus": str(CORPUS), "tokenizer": "char"},
        # spike_window small so the spike detector's state matters across the kill
        "train": dict(steps=STEPS, batch_size=4, lr=3e-3, warmup_steps=5, probe_every=10, val_every=20,
                      val_batches=2, ckpt_every=5, num_threads=1, seed=3, spike_window=8, spike_factor=1.05),
        "tracking": {"tracking_uri": f"sqlite:///{store / 'mlflow.db'}"},
    }


def _train_cmd(config: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "mhc_bench.cli", "train", "--config", str(config), "--out", str(out)]


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    store = tmp_path / "store"
    raw = tiny(store)
    config = tmp_path / "cell.yaml"
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "killed"

    proc = subprocess.Popen(_train_cmd(config, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = out / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not ckpt.exists():
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "metrics.json").exists(), "the run finished before the kill: make it longer"
    killed_at = torch.load(ckpt, weights_only=True)["global_step"]
    assert 0 < killed_at < STEPS

    resumed = subprocess.run(_train_cmd(config, out), capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout
    metrics = json.loads((out / "metrics.json").read_text())

    # the uninterrupted reference, in its own store (same cell id, so keep the run counts apart)
    reference = train_cell(parse_cell_config(tiny(tmp_path / "ref-store")), tmp_path / "reference")
    assert metrics["status"] == reference["status"] == "completed"
    for key in ("steps_done", "tokens_seen", "spike_count", "n_params"):
        assert metrics[key] == reference[key], key
    for key in ("final_train_loss", "final_val_loss", "max_grad_norm", "max_grad_norm_maps",
                "max_composite_fwd", "max_composite_bwd", "peak_max_composite_fwd"):
        assert metrics[key] == pytest.approx(reference[key], abs=1e-6, rel=1e-6), key
    h_resumed = json.loads((out / "history.json").read_text())
    h_reference = json.loads((tmp_path / "reference" / "history.json").read_text())
    assert [h["step"] for h in h_resumed] == [h["step"] for h in h_reference]
    for a, b in zip(h_resumed, h_reference, strict=True):
        for key in ("train_loss", "val_loss", "grad_norm", "lr", "max_composite_fwd", "spike_count"):
            expected = b.get(key) if b.get(key) is None else pytest.approx(b[key], abs=1e-6, rel=1e-6)
            assert a.get(key) == expected, (a["step"], key)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=raw["tracking"]["tracking_uri"])
    experiment = client.get_experiment_by_name("mhc-bench")
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_name for r in runs] == [cell_id(parse_cell_config(raw))]
    assert runs[0].info.run_id == metrics["mlflow_run_id"]
    assert runs[0].info.status == "FINISHED"
    # the steps replayed after the resume (last checkpoint -> kill) are not logged twice, and the
    # run holds exactly what the cell's files hold
    for key in ("train/loss_mean", "gain/max_composite_fwd", "val/loss", "grad/grad_norm"):
        steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, key)]
        assert steps and len(steps) == len(set(steps)), (key, steps)
    from store_checks import assert_mirrors_cells

    assert_mirrors_cells(store / "mlflow.db", [out])
