"""Timing and memory primitives shared by all benchmarks.

Timings are medians over repeats after warm-up, with the variants of one
group interleaved (a rotated order per repeat) so that drift from other
processes on a shared machine hits all variants alike. Memory on CPU is the
activation memory held between forward and backward: the bytes of distinct
storages autograd saves (parameters excluded) plus the inputs that
non-reentrant checkpointing keeps for its recompute; on CUDA it is
``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_medians(
    runners: dict[str, Callable[[], object]], repeats: int, warmup: int, device: torch.device
) -> dict[str, list[float]]:
    """Milliseconds per call of every runner, interleaved, warm-up calls excluded."""
    names = list(runners)
    for _ in range(warmup):
        for name in names:
            runners[name]()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            sync(device)
            start = time.perf_counter()
            runners[name]()
            sync(device)
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


class SavedBytes:
    """Count distinct storages saved for backward inside the ``with`` block."""

    def __init__(self, exclude: Iterable[torch.Tensor] = ()) -> None:
        self._exclude = {t.untyped_storage().data_ptr() for t in exclude}
        self._seen: dict[int, int] = {}
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self.add, lambda t: t)

    def add(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in self._exclude:
            self._seen[storage.data_ptr()] = storage.nbytes()
        return t

    @property
    def total(self) -> int:
        return sum(self._seen.values())

    def __enter__(self) -> SavedBytes:
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)


def state_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Parameters, gradients and optimizer state: the non-activation part of a step's memory."""
    total = 0
    for p in model.parameters():
        total += 2 * p.numel() * p.element_size()
    for state in optimizer.state.values():
        total += sum(v.numel() * v.element_size() for v in state.values() if torch.is_tensor(v))
    return total


def keep_freed_memory() -> bool:
    """Stop glibc from handing freed tensor memory back to the OS (Linux only).

    By default every large CPU tensor is mmapped and unmapped per step, so each
    step pays fresh page faults; in VMs that reclaim idle pages this made the
    first steps of a process 10-30x slower than later ones and swamped the
    differences being measured. Returns whether the setting took effect.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_mmap_threshold = -1, -3
        mmap_ok = libc.mallopt(m_mmap_threshold, 32 * 2**20)
        return bool(mmap_ok) and bool(libc.mallopt(m_trim_threshold, 2**30))
    except (OSError, AttributeError):
        return False
