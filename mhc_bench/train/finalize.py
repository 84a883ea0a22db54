"""After training: final evaluation, the cell's files, and their MLflow mirror (rank 0 only).

Order matters for a kill at any point: the weights, history, gains and plots first, then
the MLflow mirror of the files, then ``metrics.json`` (its presence marks the cell
finished, and it records the weights' size and sha256), and only then the run is marked
``FINISHED``. A cell killed before ``metrics.json`` resumes from its checkpoint and
finalises again; the mirror writes one value per (key, step) whatever ran before.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import torch

from mhc_bench import cellfolder as cf
from mhc_bench import tracking
from mhc_bench.cellconfig import CellConfig
from mhc_bench.data.epochs import epochs
from mhc_bench.train import mirror
from mhc_bench.train.data import TokenDataModule, eval_batches
from mhc_bench.train.module import GPTModule, perplexity
from mhc_bench.train.monitor import TrainingMonitor, peak_memory_mb, probe_gains
from mhc_bench.train.plots import plot_gains_over_steps, plot_gains_per_layer


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


def execution_settings(cfg: CellConfig, kernels: str) -> dict[str, Any]:
    """The settings outside the cell's identity (how it ran: ``kernels`` as run, which a numerical
    replicate switches to the reference), with the threads torch used."""
    from mhc_bench.cellconfig import EXECUTION_MODEL, EXECUTION_TRAIN

    out: dict[str, Any] = {k: getattr(cfg.model, k) for k in EXECUTION_MODEL}
    out["kernels"] = kernels
    out.update({k: getattr(cfg.train, k) for k in EXECUTION_TRAIN})
    out["devices"] = cfg.train.devices
    out["torch_threads"] = torch.get_num_threads()
    return out


def final_metrics(cfg: CellConfig, ref: tracking.RunRef, steps_done: int, module: GPTModule,
                  monitor: TrainingMonitor, val_loss: float, gains: dict[str, Any],
                  train_tokens: int) -> cf.Metrics:
    """The ``metrics.json`` record (:class:`mhc_bench.cellfolder.Metrics`)."""
    assert cfg.resolved is not None
    probes = [h for h in monitor.history if "train_loss" in h]
    stopped = monitor.stopped or {}
    tokens_per_step = cfg.train.batch_size * cfg.model.seq_len * cfg.train.devices
    metrics: dict[str, Any] = {
        "cell_id": cfg.resolved.cell_id,
        "status": stopped.get("status", "completed"),
        "stopped_step": stopped.get("step"),
        "stop_reason": stopped.get("reason"),
        "steps_done": steps_done,
        "final_train_loss": probes[-1]["train_loss"] if probes else None,
        "final_val_loss": val_loss,
        "final_val_ppl": perplexity(val_loss),
        "tokens_seen": steps_done * tokens_per_step,
        # Passes over train.bin: how often the cell's data repeats (token budgets, data.max_epochs).
        "epochs_seen": epochs(steps_done * tokens_per_step, train_tokens),
        "wall_time_s": monitor.wall_time_s(),
        "tokens_per_s": tokens_per_step * monitor.timed_steps / max(monitor.timed_s, 1e-9),
        "step_time_ms": 1000 * monitor.timed_s / max(monitor.timed_steps, 1),
        # The first step alone: with kernels: compile it holds the compilation (from cache or not).
        "first_step_s": monitor.first_step_s,
        "peak_mem_mb": peak_memory_mb(module.device),
        **{k: gains[k] for k in cf.GAIN_METRICS},
        "max_grad_norm": monitor.max_grad_norm,
        "max_grad_norm_maps": monitor.max_grad_norm_maps,
        "spike_count": monitor.spikes.count,
        "n_params": module.model.num_params(),
        "kernel_paths": module.model.kernel_paths(module.device.type),
        "execution": execution_settings(cfg, module.model.cfg.kernels),
        "mlflow_run_id": ref.run_id,
        "mlflow_tracking_uri": ref.tracking_uri,
        "mlflow_experiment": ref.experiment,
        "config_hash": cfg.resolved.config_hash,
        "variant": cfg.model.variant,
        "n_streams": cfg.model.n_streams,
        "seed": cfg.train.seed,
    }
    # Gains peak during training for HC; the keys above are the final model's.
    for key in cf.PEAK_GAINS:
        values = [h[key] for h in probes if h.get(key) is not None]
        metrics[f"peak_{key}"] = max(values) if values else None
    metrics["spike_steps"] = list(monitor.spikes.steps)
    return cf.Metrics.model_validate(cf.finite_or_none(metrics))


def save_weights(model: torch.nn.Module, path: Path) -> tuple[int, str]:
    """The state dict as safetensors, written atomically; returns (bytes, sha256)."""
    from safetensors.torch import save_file

    state = {k.removeprefix("_orig_mod."): v.detach().cpu().clone()  # tied weights: one copy each
             for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(state, str(tmp))
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    tmp.replace(path)
    return path.stat().st_size, cf.file_sha256(path)


def finalize_cell(cfg: CellConfig, cell_dir: Path, ref: tracking.RunRef, trainer: Any, module: GPTModule,
                  datamodule: TokenDataModule, monitor: TrainingMonitor) -> dict[str, Any]:
    """Evaluate the final model, write the cell's files (``metrics.json`` last: it marks "finished")."""
    model = module.model
    batches = eval_batches(datamodule.val_bin, cfg.model.seq_len, cfg.train.batch_size, cfg.train.val_batches)
    val_loss = evaluate_loss(model, batches, cfg.train.precision)
    gains = probe_gains(model, datamodule.probe_batch().to(module.device), final=True)
    train_tokens = datamodule.train_bin.stat().st_size // 2
    metrics = final_metrics(cfg, ref, trainer.global_step, module, monitor, val_loss, gains, train_tokens)

    size, sha = save_weights(model, cell_dir / cf.MODEL)
    cf.write_history(cell_dir, monitor.history)
    cf.write_gains(cell_dir, gains)
    title = f"{metrics.cell_id} (step {metrics.steps_done})"
    plots = [plot_gains_per_layer(gains, title, cell_dir / "gains_per_layer.png"),
             plot_gains_over_steps(monitor.history, metrics.cell_id, cell_dir / "gains_over_steps.png")]
    provenance = tracking.run_tags(ref)
    metrics = metrics.model_copy(update={"weights_bytes": size, "weights_sha256": sha,
                                         "provenance": provenance or None})

    history = [h.model_dump(exclude_none=True) for h in cf.read_history(cell_dir)]
    tracking.log_points(ref, {**mirror.history_points(history), **mirror.final_points(metrics)},
                        tags=mirror.final_tags(metrics))
    cf.write_metrics(cell_dir, metrics)
    tracking.log_artifacts(ref, [cell_dir / cf.CONFIG, cell_dir / cf.HISTORY, cell_dir / cf.GAINS, *plots,
                                 cell_dir / cf.METRICS])
    tracking.end_run(ref, "FINISHED")
    print(f"{metrics.cell_id}: {metrics.status} after {metrics.steps_done} steps, "
          f"val loss {val_loss:.4f}; wrote {cell_dir}")
    return metrics.model_dump()
