"""Hyper-Connections (Zhu et al., arXiv:2409.19606): unconstrained static + tanh-gated dynamic maps.

``H = S + s * tanh(RMSNorm(x_i) W)`` per input stream ``x_i`` (no scale of the norm's own;
``W`` absorbs it). The static maps start at H_res = I, H_pre = one-hot(layer index mod n)
and H_post = 1 and ``W`` at zero, so the network starts as a plain residual network (the HC
paper's initialisation). Nothing bounds H_res: its products can amplify the residual
signal, which is what the mHC paper's claims C3/C4 are about.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field

from mhc_bench import dispatch, fastops, ops
from mhc_bench.variants.base import MapKnobs, Variant, projection_flops, stream_mix_flops

if TYPE_CHECKING:
    from mhc_bench.model import ModelConfig


class HCKnobs(MapKnobs):
    """``model.mixing`` of ``hc``: the learned maps, the gates' start, the maps' norm epsilon."""

    # Std of a random start of the dynamic projection W (0: the HC paper's zeros). With copied input
    # streams and fixed H_pre / H_post (Table 1's ablation rows) a zero W keeps every stream identical
    # forever; a small random W breaks that symmetry (MHC_NOTES.md section 3b).
    projection_init_std: float = Field(default=0.0, ge=0)


class HCMaps(nn.Module):
    """Hyper-Connections' maps of one residual layer."""

    IMPLEMENTATIONS = ("torch", "fast")

    def __init__(self, cfg: ModelConfig, layer_index: int) -> None:
        super().__init__()
        knobs: HCKnobs = cfg.mixing  # type: ignore[assignment]
        n, C = cfg.n_streams, cfg.d_model
        self.n, self.eps, self.enabled, self.kernels = n, knobs.map_norm_eps, knobs.maps, cfg.kernels
        widths = {"pre": 1, "post": 1, "res": n}
        self.width = {m: widths[m] for m in ops.MAP_NAMES if m in self.enabled}
        # Dynamic projections start at zero (the maps start at their static values) unless a small
        # random start is asked for (projection_init_std), which breaks the streams' symmetry.
        self.w = nn.Parameter(torch.zeros(C, sum(self.width.values())))
        if knobs.projection_init_std > 0:
            with torch.no_grad():
                nn.init.normal_(self.w, std=knobs.projection_init_std)
        self.scale = nn.ParameterDict(
            {m: nn.Parameter(torch.tensor(knobs.alpha_init)) for m in self.width}
        )
        self.s_pre = (
            nn.Parameter(F.one_hot(torch.tensor(layer_index % n), n).float())
            if "pre" in self.enabled else None
        )
        self.s_post = nn.Parameter(torch.ones(n)) if "post" in self.enabled else None
        self.s_res = nn.Parameter(torch.eye(n)) if "res" in self.enabled else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if dispatch.pick(self.kernels, x.device.type, self.IMPLEMENTATIONS) == "fast":
            return fastops.hc_maps(x, self.w, self.scale, self.s_pre, self.s_post, self.s_res, self.eps)
        # The maps are fp32 whatever autocast says (the precision policy in mhc_bench.ops).
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self._maps(x.to(ops.compute_dtype(x.dtype)))

    def _maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h_pre, h_post, h_res = ops.static_maps(x.shape[:-2], self.n, x.dtype, x.device)
        dyn = torch.tanh(F.rms_norm(x, (x.shape[-1],), eps=self.eps) @ self.w.to(x.dtype))  # [..., n, width]
        chunks = dict(zip(self.width, dyn.split(list(self.width.values()), dim=-1), strict=True))
        if self.s_pre is not None:
            h_pre = self.s_pre + self.scale["pre"] * chunks["pre"].squeeze(-1)
        if self.s_post is not None:
            h_post = self.s_post + self.scale["post"] * chunks["post"].squeeze(-1)
        if self.s_res is not None:
            # chunks["res"][..., j, i]: input stream j's weight into output stream i.
            h_res = self.s_res + self.scale["res"] * chunks["res"].transpose(-1, -2)
        return h_pre, h_post, h_res


class HC(Variant):
    name = "hc"
    label = "HC"
    summary = "Hyper-Connections: unconstrained static + tanh-gated dynamic maps (arXiv:2409.19606)"
    marker = "^"
    color = "#d95f02"
    knobs = HCKnobs
    no_decay = ("s_pre", "s_post", "s_res")
    projections = ("w",)
    implementations = {"torch": "HCMaps._maps (reference)", "fast": "fastops.hc_maps (RMSNorm@W kernel)"}
    id_names = {"projection_init_std": "wstd"}

    def build_maps(self, cfg: ModelConfig, layer_index: int) -> nn.Module:
        return HCMaps(cfg, layer_index)

    def extra_flops(self, knobs: HCKnobs, n: int, d_model: int) -> int:  # type: ignore[override]
        """Each stream's ``C`` projected onto ``n + 2`` outputs, plus the stream mixes."""
        return projection_flops(n, d_model, n + 2) + stream_mix_flops(n, d_model) if n > 1 else 0
