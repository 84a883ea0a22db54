"""Loss-spike and divergence detection (pure Python, checkpointable state)."""

from __future__ import annotations

import math
import statistics
from collections import deque
from typing import Any


class SpikeDetector:
    """Counts steps whose loss exceeds ``factor`` x the running median of the last ``window`` losses.

    The median (not the mean) so that one spike does not raise the bar for the next;
    no verdict until half the window is filled (the early loss falls too fast to judge).
    """

    def __init__(self, factor: float, window: int) -> None:
        self.factor, self.window = factor, window
        self.recent: deque[float] = deque(maxlen=window)
        self.count = 0
        self.steps: list[int] = []

    def update(self, step: int, loss: float) -> bool:
        spike = False
        if math.isfinite(loss):
            if len(self.recent) >= max(2, self.window // 2):
                spike = loss > self.factor * statistics.median(self.recent)
            self.recent.append(loss)
        if spike:
            self.count += 1
            self.steps.append(step)
        return spike

    def state_dict(self) -> dict[str, Any]:
        return {"recent": list(self.recent), "count": self.count, "steps": list(self.steps)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.recent = deque(state["recent"], maxlen=self.window)
        self.count, self.steps = int(state["count"]), list(state["steps"])


def divergence_reason(loss: float | None = None, grad_norm: float | None = None,
                      loss_limit: float = math.inf) -> str | None:
    """Why training failed, or None: a non-finite loss or grad norm, or a loss above ``loss_limit``
    (``train.divergence_loss_factor`` x ln(vocab): far worse than a uniform guess)."""
    if loss is not None and not math.isfinite(loss):
        return f"non-finite loss ({loss})"
    if grad_norm is not None and not math.isfinite(grad_norm):
        return f"non-finite grad norm ({grad_norm})"
    if loss is not None and loss > loss_limit:
        return f"loss {loss:.4g} above {loss_limit:.4g} (exploded past a uniform guess)"
    return None


def ceiling_reason(composite_gain: float, gain_ceiling: float | None) -> str | None:
    """Why a probe stops the cell (``train.gain_ceiling``, a compute saver), or None. Not a divergence."""
    if gain_ceiling is None:
        return None
    if not math.isfinite(composite_gain) or composite_gain > gain_ceiling:
        return f"composite gain {composite_gain:.4g} above gain_ceiling {gain_ceiling:.4g}"
    return None
