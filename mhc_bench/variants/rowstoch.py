"""Row-stochastic H_res only (softmax over each row): the ablation of mHC's column constraint.

``H_res = softmax(logits, dim=-1)`` with rows = output streams, so every row sums to 1
exactly and the forward gain of every layer and of every product is exactly 1 (non-negative
entries), but nothing constrains the column sums: the backward gain is free. Everything
else is mHC's (sigmoid H_pre, 2 sigmoid H_post, one projection of the normalised
flattened stream, the same initialisation presets): comparing it with ``mhc`` isolates
what double stochasticity buys over row stochasticity.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from mhc_bench import map_init
from mhc_bench.variants.base import MapKnobs, Variant, projected_maps_flops
from mhc_bench.variants.mhc import InitPreset
from mhc_bench.variants.projected import ProjectedInit, ProjectedMaps

if TYPE_CHECKING:
    from mhc_bench.model import ModelConfig


class RowStochKnobs(MapKnobs):
    """``model.mixing`` of ``rowstoch``: mHC's knobs without Sinkhorn's iterations."""

    init: InitPreset = "onehot"  # mHC's default: the comparison isolates the H_res projection


class RowSoftmax(nn.Module):
    """``[..., n*n]`` logits -> row-stochastic ``[..., n, n]``."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits.unflatten(-1, (self.n, self.n)), dim=-1)


class RowStochastic(Variant):
    name = "rowstoch"
    label = "row-stochastic"
    summary = "H_res = softmax over rows: forward gain 1, column sums free (isolates the column constraint)"
    marker = "v"
    color = "#e7298a"
    knobs = RowStochKnobs
    no_decay = ("b_pre", "b_post", "b_res")
    projections = ("phi",)
    implementations = {"torch": "ProjectedMaps (reference)",
                       "fast": "ProjectedMaps with the RMSNorm@W kernel"}
    id_names = {"init": "init-"}

    def build_maps(self, cfg: ModelConfig, layer_index: int) -> nn.Module:
        knobs: RowStochKnobs = cfg.mixing  # type: ignore[assignment]
        n = cfg.n_streams
        preset = map_init.PRESETS[knobs.init]
        init = ProjectedInit(
            pre=map_init.pre_logits(preset, n, layer_index),
            post=map_init.post_logits(preset, n, layer_index),
            # Softmax over a row of near_identity's logits gives the same 0.99 diagonal as Sinkhorn.
            res=map_init.res_logits(preset, n).flatten(),
            alpha=knobs.alpha_init if preset.alpha is None else preset.alpha,
            projection=lambda phi: map_init.init_projection(preset, phi),
        )
        return ProjectedMaps(n, cfg.d_model, knobs.maps, n * n, RowSoftmax(n), init, knobs.map_norm_eps,
                             cfg.kernels)

    def extra_flops(self, knobs: RowStochKnobs, n: int, d_model: int) -> int:  # type: ignore[override]
        return projected_maps_flops(knobs.maps, n, d_model, n * n)
