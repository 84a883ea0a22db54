"""Epochs from token counts, and the warning for a cell that would read its training tokens too often.

A cell samples random windows of ``train.bin`` for a fixed number of steps, so
the data it repeats is decided by ``steps x batch x seq_len`` against the size
of ``train.bin``. The GPU profiles set ``data.max_epochs: 1`` (each cell on
fresh tokens); a cell planned beyond it still trains, with a warning that says
which knob to turn.
"""

from __future__ import annotations

import warnings


class DataRepeatWarning(UserWarning):
    """A cell will read its training tokens more often than ``data.max_epochs`` allows."""


def epochs(tokens_seen: int, train_tokens: int) -> float:
    """How many times ``tokens_seen`` covers ``train_tokens`` (inf for an empty train split)."""
    return tokens_seen / train_tokens if train_tokens else float("inf")


def warn_if_repeating(cell: str, planned_tokens: int, train_tokens: int, max_epochs: float | None) -> float:
    """Warn (:class:`DataRepeatWarning`) when the plan exceeds ``max_epochs``; return the planned epochs."""
    planned = epochs(planned_tokens, train_tokens)
    if max_epochs is not None and planned > max_epochs:
        warnings.warn(
            f"{cell}: will read its {train_tokens:,} training tokens {planned:.2f} times "
            f"({planned_tokens:,} tokens planned), more than data.max_epochs = {max_epochs:g}; "
            f"raise data.train_tokens or lower train.steps", DataRepeatWarning, stacklevel=2)
    return planned
