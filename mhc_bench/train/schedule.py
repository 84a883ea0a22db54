"""Learning-rate multipliers per optimizer step: linear warm-up, then cosine or the paper's step decay."""

from __future__ import annotations

import math
from collections.abc import Callable

from mhc_bench.cellconfig import TrainSection


def lr_multiplier(train: TrainSection) -> Callable[[int], float]:
    """``f(step) -> factor`` for ``torch.optim.lr_scheduler.LambdaLR`` stepped once per optimizer step.

    - warm-up: ``(step + 1) / warmup_steps`` for the first ``warmup_steps`` steps;
    - ``cosine``: from 1 down to ``min_lr_ratio`` at the last step;
    - ``step``: 1, then ``step_factor ** k`` after the k-th milestone (the mHC paper
      decays at 80 % and 90 % of training by 0.316 each); ``min_lr_ratio`` is unused.
    """
    total, warmup = train.steps, train.warmup_steps
    milestones = [round(m * total) for m in train.step_milestones]

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if train.schedule == "step":
            return train.step_factor ** sum(step >= m for m in milestones)
        span = max(1, total - warmup - 1)
        progress = min(1.0, (step - warmup) / span)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return train.min_lr_ratio + (1.0 - train.min_lr_ratio) * cosine

    return factor
