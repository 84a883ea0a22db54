"""After training: final evaluation, the cell's files, and their MLflow mirror (rank 0 only)."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

import torch

from mhc_bench.train import artifacts as art
from mhc_bench.train.config import CellConfig
from mhc_bench.train.data import TokenDataModule, eval_batches
from mhc_bench.train.module import GPTModule, perplexity
from mhc_bench.train.monitor import TrainingMonitor, peak_memory_mb, probe_gains
from mhc_bench.train.plots import plot_gains_over_steps, plot_gains_per_layer
from mhc_bench.train.tracking import RunRef, log_final


def _autocast(precision: str, device: Any) -> contextlib.AbstractContextManager:
    if device.type == "cuda" and precision in ("bf16-mixed", "16-mixed"):
        return torch.autocast("cuda", dtype=torch.bfloat16 if precision.startswith("bf16") else torch.float16)
    return contextlib.nullcontext()


def evaluate_loss(model: Any, batches: list, precision: str) -> float:
    """Mean loss over fixed batches (equal sizes, so the same mean as the val MeanMetric)."""
    device = next(model.parameters()).device
    model.eval()
    total = 0.0
    with torch.no_grad(), _autocast(precision, device):
        for x, y in batches:
            total += float(model(x.to(device), y.to(device))[1])
    return total / len(batches)


def final_metrics(cfg: CellConfig, ref: RunRef, steps_done: int, module: GPTModule,
                  monitor: TrainingMonitor, val_loss: float, gains: dict[str, Any]) -> dict[str, Any]:
    """The ``metrics.json`` record (keys: ``artifacts.METRICS_KEYS``, plus ``peak_*`` over the run)."""
    assert cfg.resolved is not None
    probes = [h for h in monitor.history if "train_loss" in h]
    diverged = monitor.diverged or {}
    tokens_per_step = cfg.train.batch_size * cfg.model.seq_len * cfg.train.devices
    metrics: dict[str, Any] = {
        "cell_id": cfg.resolved.cell_id,
        "status": "diverged" if diverged else "completed",
        "diverged_step": diverged.get("step"),
        "diverged_reason": diverged.get("reason"),
        "steps_done": steps_done,
        "final_train_loss": probes[-1]["train_loss"] if probes else None,
        "final_val_loss": val_loss,
        "final_val_ppl": perplexity(val_loss),
        "tokens_seen": steps_done * tokens_per_step,
        "wall_time_s": monitor.wall_time_s(),
        "tokens_per_s": tokens_per_step * monitor.timed_steps / max(monitor.timed_s, 1e-9),
        "step_time_ms": 1000 * monitor.timed_s / max(monitor.timed_steps, 1),
        # The first step alone: with kernels: compile it holds the compilation (from cache or not).
        "first_step_s": monitor.first_step_s,
        "peak_mem_mb": peak_memory_mb(module.device),
        **{k: gains[k] for k in ("max_single_fwd", "max_single_bwd", "max_composite_fwd",
                                 "max_composite_bwd", "layer0_fwd", "layer0_bwd", "min_composite_min_col")},
        "max_grad_norm": monitor.max_grad_norm,
        "max_grad_norm_maps": monitor.max_grad_norm_maps,
        "spike_count": monitor.spikes.count,
        "n_params": module.model.num_params(),
        "mlflow_run_id": ref.run_id,
        "mlflow_tracking_uri": ref.tracking_uri,
        "mlflow_experiment": ref.experiment,
        "config_hash": cfg.resolved.config_hash,
        "variant": cfg.model.residual,
        "n_streams": cfg.model.n_streams,
        "seed": cfg.train.seed,
    }
    # Gains peak during training for HC; the contract keys above are the final model's.
    for key in ("max_composite_fwd", "max_composite_bwd"):
        values = [h[key] for h in probes if h.get(key) is not None]
        metrics[f"peak_{key}"] = max(values) if values else None
    metrics["spike_steps"] = list(monitor.spikes.steps)
    return metrics


def finalize_cell(cfg: CellConfig, cell_dir: Path, ref: RunRef, trainer: Any, module: GPTModule,
                  datamodule: TokenDataModule, monitor: TrainingMonitor) -> dict[str, Any]:
    """Evaluate the final model, write the cell's files (``metrics.json`` last: it marks "finished")."""
    model = module.model
    batches = eval_batches(datamodule.val_bin, cfg.model.seq_len, cfg.train.batch_size, cfg.train.val_batches)
    val_loss = evaluate_loss(model, batches, cfg.train.precision)
    gains = probe_gains(model, datamodule.probe_batch().to(module.device))
    metrics = final_metrics(cfg, ref, trainer.global_step, module, monitor, val_loss, gains)

    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, cell_dir / art.MODEL)
    art.write_json(cell_dir / art.HISTORY, monitor.history)
    art.write_json(cell_dir / art.GAINS, gains)
    title = f"{metrics['cell_id']} (step {metrics['steps_done']})"
    plots = [plot_gains_per_layer(gains, title, cell_dir / "gains_per_layer.png"),
             plot_gains_over_steps(monitor.history, metrics["cell_id"], cell_dir / "gains_over_steps.png")]

    staging = cell_dir / ".staging"
    staging.mkdir(exist_ok=True)
    staged = art.write_json(staging / art.METRICS, metrics)
    files = [cell_dir / art.CONFIG, cell_dir / art.HISTORY, cell_dir / art.GAINS, *plots, staged]
    log_final(ref, metrics, metrics["steps_done"], files, metrics["status"])
    staged.replace(cell_dir / art.METRICS)
    shutil.rmtree(staging, ignore_errors=True)
    print(f"{metrics['cell_id']}: {metrics['status']} after {metrics['steps_done']} steps, "
          f"val loss {val_loss:.4f}; wrote {cell_dir}")
    return art.finite_or_none(metrics)
