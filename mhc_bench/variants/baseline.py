"""The plain residual network ``x_{l+1} = x_l + F(x_l)`` (pre-norm inside F): one stream, no maps.

The reference every loss gap is measured against. A model with ``n_streams = 1`` and the
identity maps of any n-stream variant must reduce to it exactly (tested).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mhc_bench.variants.base import Knobs, Variant

if TYPE_CHECKING:
    import torch.nn as nn

    from mhc_bench.model import ModelConfig


class BaselineKnobs(Knobs):
    """``model.mixing`` of ``baseline``: nothing to set."""


class Baseline(Variant):
    name = "baseline"
    label = "baseline"
    summary = "plain residual network x + F(x), n = 1 (the reference of every loss gap)"
    marker = "s"
    color = "#4d4d4d"
    knobs = BaselineKnobs
    is_reference = True
    single_stream = True
    implementations = {"torch": "x + F(x)"}

    def build_maps(self, cfg: ModelConfig, layer_index: int) -> nn.Module | None:
        return None
