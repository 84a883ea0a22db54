"""The LightningModule around :class:`mhc_bench.model.GPT`: loss, metrics, AdamW and the LR schedule."""

from __future__ import annotations

import math
import random
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR
from torchmetrics import MeanMetric

from mhc_bench.cellconfig import TrainSection
from mhc_bench.model import GPT, ModelConfig
from mhc_bench.train.data import Batch
from mhc_bench.train.schedule import lr_multiplier
from mhc_bench.variants import Variant


def uses_weight_decay(
    name: str, param: torch.nn.Parameter, variant: Variant, decay_map_projections: bool
) -> bool:
    """Decay matrices only (dim >= 2): not norms, biases, gates, nor the variant's static maps.

    A static H_res (mHC's ``b_res``, HC's ``s_res``) is an n x n matrix but decaying it would pull
    H_res towards 0 instead of towards its start, so each variant names its never-decayed
    parameters (:attr:`Variant.no_decay`). Its dynamic projections (:attr:`Variant.projections`:
    mHC's ``phi``, HC's ``w``) follow ``decay_map_projections`` (default: decayed like any weight
    matrix); any other matrix inside the maps is not decayed.
    """
    leaf = name.rsplit(".", 1)[-1]
    if param.dim() < 2 or leaf in variant.no_decay:
        return False
    if ".maps." in f".{name}":
        return decay_map_projections and leaf in variant.projections
    return True


class GPTModule(L.LightningModule):
    """Next-token training of one GPT; the running train loss lives in the checkpoint."""

    def __init__(self, model_cfg: ModelConfig, train: TrainSection) -> None:
        super().__init__()
        self.model = GPT(model_cfg, init_seed=train.seed)
        self.train_cfg = train
        # Mean train loss since the last probe; persistent so that resume continues the same mean.
        self.train_loss = MeanMetric()
        self.train_loss.persistent(True)
        self.val_loss = MeanMetric()
        self.last_val_loss: float | None = None

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        _, loss = self.model(x, y)
        self.train_loss.update(loss.detach())
        # Progress bar only: MLflow holds what the cell files hold (mhc_bench.train.mirror).
        self.log("train/loss", loss.detach(), prog_bar=True, logger=False)
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        x, y = batch
        _, loss = self.model(x, y)
        self.val_loss.update(loss.detach())

    def on_validation_epoch_end(self) -> None:
        loss = self.val_loss.compute()
        self.val_loss.reset()
        self.last_val_loss = float(loss)
        # Logged by the monitor at the step of its history entry (mhc_bench.train.mirror).
        self.log_dict({"val/loss": loss, "val/ppl": torch.exp(loss)}, logger=False)

    def configure_optimizers(self) -> dict[str, Any]:
        cfg = self.train_cfg
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            decayed = uses_weight_decay(name, p, self.model.cfg.spec, cfg.decay_map_projections)
            (decay if decayed else no_decay).append(p)
        groups = [{"params": decay, "weight_decay": cfg.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
        scheduler = LambdaLR(optimizer, lr_multiplier(cfg))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # Global RNG states travel with the checkpoint (numpy's as a tensor: weights_only-safe).
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        checkpoint["rng_states"] = {
            "torch": torch.get_rng_state(),
            "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("rng_states")
        if not states:
            return
        torch.set_rng_state(states["torch"])
        kind, keys, pos, has_gauss, cached = states["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        random.setstate(states["python"])
        if states["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])


def perplexity(loss: float | None) -> float | None:
    if loss is None or not math.isfinite(loss):
        return None
    return math.exp(min(loss, 700.0))
