"""``checkpoints/last.ckpt``: every ``ckpt_every`` steps, after that step's validation, atomically.

Lightning's ``ModelCheckpoint(every_n_train_steps=...)`` saves at the end of the training
batch, before the validation Lightning runs at the same step, and on resume Lightning
assumes that validation ran: a cell killed after such a checkpoint lost that validation
point for good. Here a checkpoint that falls on a validation step is taken when the
validation ends (Lightning's own restart logic then knows the validation ran, and skips
only it). The file is written beside its final name and renamed, so a kill mid-write
leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L


class LastCheckpoint(L.Callback):
    """Keeps one resumable checkpoint, ``path``, refreshed every ``every`` optimizer steps."""

    def __init__(self, path: Path, every: int, val_every: int) -> None:
        self.path, self.every, self.val_every = Path(path), every, val_every
        self._after_validation: int | None = None

    def _save(self, trainer: L.Trainer) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        trainer.save_checkpoint(tmp)  # collective under DDP; rank 0 writes
        if trainer.is_global_zero:
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            tmp.replace(self.path)
        trainer.strategy.barrier("last_checkpoint")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if step == 0 or step % self.every:
            return
        if step % self.val_every == 0:  # Lightning validates after this hook (val_check_interval)
            self._after_validation = step
        else:
            self._save(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and self._after_validation == trainer.global_step:
            self._after_validation = None
            self._save(trainer)
