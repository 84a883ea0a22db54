"""Windows of token files: random training batches that resume exactly, a fixed validation set.

Training batch ``i`` on rank ``r`` is drawn from ``numpy.random.default_rng([seed, r, i])``
(a counter-based stream), so the sampler's whole state is the index of the next batch.
That index is checkpointed with the datamodule; on resume the stream continues at
the first batch the interrupted run had not trained on, whatever Lightning prefetched.
Validation uses evenly spaced windows of ``val.bin``: the same tokens for every
seed and variant, so val losses are comparable across cells.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

Batch = tuple[torch.Tensor, torch.Tensor]


def read_tokens(path: Path) -> np.ndarray:
    return np.memmap(path, dtype=np.uint16, mode="r")


def windows(data: np.ndarray, offsets: np.ndarray, seq_len: int) -> Batch:
    """Inputs ``data[o : o+T]`` and next-token targets ``data[o+1 : o+T+1]`` for each offset."""
    idx = offsets[:, None] + np.arange(seq_len + 1)[None, :]
    block = torch.from_numpy(data[idx].astype(np.int64))
    return block[:, :-1].contiguous(), block[:, 1:].contiguous()


def _check_length(data: np.ndarray, seq_len: int, path: Path) -> None:
    if len(data) < seq_len + 2:
        raise ValueError(f"{path} has {len(data)} tokens, fewer than seq_len + 2 = {seq_len + 2}")


class TrainWindows(IterableDataset):
    """Endless stream of random-window batches starting at batch index ``start``."""

    def __init__(self, path: Path, seq_len: int, batch_size: int, seed: int, rank: int, start: int) -> None:
        super().__init__()
        self.path, self.seq_len, self.batch_size = path, seq_len, batch_size
        self.seed, self.rank, self.start = seed, rank, start

    def batch(self, data: np.ndarray, index: int) -> Batch:
        rng = np.random.default_rng([self.seed, self.rank, index])
        offsets = rng.integers(0, len(data) - self.seq_len, size=self.batch_size)
        return windows(data, offsets, self.seq_len)

    def __iter__(self) -> Iterator[Batch]:
        data = read_tokens(self.path)
        _check_length(data, self.seq_len, self.path)
        index = self.start
        while True:
            yield self.batch(data, index)
            index += 1


def eval_batches(path: Path, seq_len: int, batch_size: int, n_batches: int) -> list[Batch]:
    """``n_batches`` batches of evenly spaced windows covering the file (fixed, no randomness)."""
    data = read_tokens(path)
    _check_length(data, seq_len, path)
    offsets = np.linspace(0, len(data) - seq_len - 1, batch_size * n_batches).astype(np.int64)
    return [windows(data, chunk, seq_len) for chunk in np.split(offsets, n_batches)]


def probe_batch(val_bin: Path, seq_len: int, batch_size: int, val_batches: int) -> torch.Tensor:
    """Fixed inputs for the stability probes: the first validation batch (same for every cell)."""
    return eval_batches(val_bin, seq_len, batch_size, val_batches)[0][0]


class TokenDataModule(L.LightningDataModule):
    """Train stream + fixed validation batches of one prepared data directory.

    Validation batches are sharded over ranks by hand (the Trainer runs with
    ``use_distributed_sampler=False``); the val ``MeanMetric`` weights by count, so the
    synced mean is the mean over all windows.
    """

    def __init__(self, train_bin: Path, val_bin: Path, seq_len: int, batch_size: int,
                 val_batches: int, seed: int) -> None:
        super().__init__()
        self.train_bin, self.val_bin = Path(train_bin), Path(val_bin)
        self.seq_len, self.batch_size = seq_len, batch_size
        self.val_batches, self.seed = val_batches, seed
        self._restored_next: int | None = None

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        rank, _ = self._rank_world()
        start = self._restored_next if self._restored_next is not None else self.trainer.global_step
        stream = TrainWindows(self.train_bin, self.seq_len, self.batch_size, self.seed, rank, start)
        return DataLoader(stream, batch_size=None, num_workers=0)

    def val_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        batches = eval_batches(self.val_bin, self.seq_len, self.batch_size, self.val_batches)
        return DataLoader(batches[rank::world], batch_size=None, num_workers=0)

    def probe_batch(self) -> torch.Tensor:
        return probe_batch(self.val_bin, self.seq_len, self.batch_size, self.val_batches)

    def state_dict(self) -> dict[str, Any]:
        # Batches trained on so far = optimizer steps (one batch per step, no accumulation).
        return {"seed": self.seed, "next_batch": int(self.trainer.global_step)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("seed") != self.seed:
            raise ValueError(f"checkpoint was trained with data seed {state.get('seed')}, "
                             f"the config says {self.seed}")
        self._restored_next = int(state["next_batch"])
