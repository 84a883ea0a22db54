"""The training monitor callback: stability probes, grad norms, throughput, memory, spikes, divergence.

Two reasons stop a cell early, and they stay apart: *divergence*, a training failure (a
non-finite or exploding loss or gradient norm, :func:`~mhc_bench.train.stability.divergence_reason`),
and the optional *gain ceiling* (``train.gain_ceiling``), a compute saver triggered by a probe:
such a cell is ``stopped``, never ``diverged`` (a gain is a measurement of the maps, and mHC's is
bounded by construction, so counting it as a failure would make claim C4 restate C3).

Every ``probe_every`` steps (and at the last step, and when training stops early)
it measures the Amax gains of the residual maps on a fixed probe batch, logs them
with the mean train loss since the previous probe, grad norms, tokens/s, step time
and peak memory as MLflow metrics, and appends the same numbers to ``history``.
Its whole state (history, spike detector, running maxima, timers) goes into the
checkpoint so that a resumed run reports the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import math
import resource
import time
from typing import Any

import lightning as L
import torch

from mhc_bench.cellconfig import TrainSection
from mhc_bench.definitions import PROBE_LISTS, PROBE_SCALARS
from mhc_bench.probes import grad_norms, probe_model
from mhc_bench.train.mirror import entry_metrics, val_metrics
from mhc_bench.train.stability import SpikeDetector, ceiling_reason, divergence_reason

GAIN_SCALARS, GAIN_LISTS = PROBE_SCALARS, PROBE_LISTS


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated by torch, or the process's peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def probe_gains(model: torch.nn.Module, idx: torch.Tensor, final: bool = False) -> dict[str, Any]:
    """Amax gains, stream spreads and the projection's convergence of one forward pass on ``idx`` (see
    :mod:`mhc_bench.probes`); ``final`` adds Sinkhorn's iterations needed."""
    return probe_model(model, idx, final=final)


def _max(a: float, b: float) -> float:
    """max that lets NaN/inf through (a divergence must show up in the maxima)."""
    if not math.isfinite(b):
        return b if math.isfinite(a) or math.isnan(b) else a
    return b if (math.isfinite(a) and b > a) else a


class TrainingMonitor(L.Callback):
    def __init__(self, train: TrainSection, probe_idx: torch.Tensor, tokens_per_step: int) -> None:
        self.cfg, self.probe_idx, self.tokens_per_step = train, probe_idx, tokens_per_step
        self.spikes = SpikeDetector(train.spike_factor, train.spike_window)
        self.history: list[dict[str, Any]] = []
        # {"step", "reason", "status": "diverged" | "stopped"} once training stops early.
        self.stopped: dict[str, Any] | None = None
        self.max_grad_norm = self.max_grad_norm_maps = 0.0
        self.timed_s, self.timed_steps = 0.0, 0  # pure train-step time, all sessions
        self.first_step_s: float | None = None  # includes torch.compile's compilation (kernels: compile)
        self.wall_prior_s = 0.0  # wall time of earlier sessions (before a resume)
        self._interval = {"time": 0.0, "steps": 0, "max_grad_norm": 0.0}
        self._grads: dict[str, float] = {}
        self._pending: str | None = None
        self._fit_start = self._t0 = time.perf_counter()

    # -- timing -------------------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fit_start = time.perf_counter()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._t0 = time.perf_counter()

    def wall_time_s(self) -> float:
        return self.wall_prior_s + time.perf_counter() - self._fit_start

    # -- per step -----------------------------------------------------------------------------------
    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        # Before clipping: Lightning clips after this hook.
        self._grads = grad_norms(pl_module.model)
        self.max_grad_norm = _max(self.max_grad_norm, self._grads["grad_norm"])
        self.max_grad_norm_maps = _max(self.max_grad_norm_maps, self._grads["grad_norm_maps"])
        self._interval["max_grad_norm"] = _max(self._interval["max_grad_norm"], self._grads["grad_norm"])
        self._pending = self._pending or divergence_reason(grad_norm=self._grads["grad_norm"])

    def _loss_limit(self, pl_module: L.LightningModule) -> float:
        return self.cfg.divergence_loss_factor * math.log(pl_module.model.cfg.vocab_size)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        loss = float(outputs["loss"])  # syncs the device, so the step time below is real
        elapsed = time.perf_counter() - self._t0
        step = trainer.global_step
        if self.first_step_s is None:
            self.first_step_s = elapsed
        self.timed_s += elapsed
        self.timed_steps += 1
        self._interval["time"] += elapsed
        self._interval["steps"] += 1
        self.spikes.update(step, loss)

        reason = self._pending or divergence_reason(loss=loss, loss_limit=self._loss_limit(pl_module))
        self._pending = None
        # Every rank must agree before anything collective (metric sync) or stopping.
        stop = trainer.strategy.reduce_boolean_decision(reason is not None, all=False)
        if stop and reason is None:
            reason = "non-finite or exploding loss or grad norm on another rank"
        status = "diverged"
        if stop or step % self.cfg.probe_every == 0 or step >= (trainer.max_steps or math.inf):
            entry = self._probe(trainer, pl_module, step)
            gain = max(entry["max_composite_fwd"], entry["max_composite_bwd"])
            if reason is None and (reason := ceiling_reason(gain, self.cfg.gain_ceiling)) is not None:
                status = "stopped"
        if reason is not None and self.stopped is None:
            self.stopped = {"step": step, "reason": reason, "status": status}
            trainer.should_stop = True

    def _probe(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> dict[str, Any]:
        train_loss = float(pl_module.train_loss.compute())
        pl_module.train_loss.reset()
        gains = probe_gains(pl_module.model, self.probe_idx.to(pl_module.device))
        interval = self._interval
        entry: dict[str, Any] = {
            "step": step,
            "train_loss": train_loss,
            "val_loss": None,
            "lr": trainer.optimizers[0].param_groups[0]["lr"],
            **self._grads,
            "interval_max_grad_norm": interval["max_grad_norm"],
            "tokens_per_s": self.tokens_per_step * interval["steps"] / max(interval["time"], 1e-9),
            "step_time_ms": 1000 * interval["time"] / max(interval["steps"], 1),
            "peak_mem_mb": peak_memory_mb(pl_module.device),
            "spike_count": self.spikes.count,
            **{k: gains[k] for k in GAIN_SCALARS},
            **{k: gains[k] for k in GAIN_LISTS},
            "probe_version": gains["probe_version"],
        }
        self._interval = {"time": 0.0, "steps": 0, "max_grad_norm": 0.0}
        self.history.append(entry)
        if trainer.logger is not None:
            trainer.logger.log_metrics(entry_metrics(entry), step=step)
        return entry

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or pl_module.last_val_loss is None:
            return
        step, loss = trainer.global_step, pl_module.last_val_loss
        if self.history and self.history[-1]["step"] == step:
            self.history[-1]["val_loss"] = loss
        else:
            self.history.append({"step": step, "val_loss": loss})
        if trainer.logger is not None:  # at the step of its history entry (Lightning's would be step - 1)
            trainer.logger.log_metrics(val_metrics(loss), step=step)

    # -- checkpoint ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "history": self.history, "spikes": self.spikes.state_dict(), "stopped": self.stopped,
            "max_grad_norm": self.max_grad_norm, "max_grad_norm_maps": self.max_grad_norm_maps,
            "timed_s": self.timed_s, "timed_steps": self.timed_steps, "wall_s": self.wall_time_s(),
            "first_step_s": self.first_step_s,
            "interval": dict(self._interval),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history, self.stopped = list(state["history"]), state.get("stopped")
        self.spikes.load_state_dict(state["spikes"])
        self.max_grad_norm, self.max_grad_norm_maps = state["max_grad_norm"], state["max_grad_norm_maps"]
        self.timed_s, self.timed_steps = state["timed_s"], state["timed_steps"]
        self.first_step_s = state.get("first_step_s")  # absent in checkpoints of older versions
        self.wall_prior_s, self._interval = state["wall_s"], dict(state["interval"])

