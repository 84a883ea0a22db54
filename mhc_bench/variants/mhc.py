"""mHC (Xie et al., arXiv:2512.24880): the maps projected onto manifolds, H_res by Sinkhorn-Knopp.

Eq. 10-12: RMSNorm of the flattened ``n*C`` stream, one matmul with
``[phi_pre | phi_post | phi_res]``, scalar gates ``alpha``, static biases (a preset of
:mod:`mhc_bench.map_init`: the paper gives none), then ``H_pre = sigmoid``,
``H_post = 2 sigmoid`` and ``H_res = SinkhornKnopp`` (log domain, ``sinkhorn_iters``
rounds of column then row normalisation: rows exact, columns converging).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
import torch.nn as nn
from pydantic import Field

from mhc_bench import dispatch, fastops, map_init, ops
from mhc_bench.variants.base import MapKnobs, Variant, projected_maps_flops

if TYPE_CHECKING:
    from mhc_bench.model import ModelConfig

InitPreset = Literal["megatron", "liger", "lucidrains", "near_identity", "onehot"]


class MHCKnobs(MapKnobs):
    """``model.mixing`` of ``mhc``."""

    # The default init was "megatron" until December 2026: cell ids still measure against it.
    identity_base: ClassVar[dict[str, Any]] = {"init": "megatron"}

    # Static biases, gates and projection at initialisation: a preset of mhc_bench.map_init (the
    # paper gives none; the references disagree). "onehot" (mHC-lite's +-1 pre/post logits by layer,
    # near-identity H_res) is the default: under "megatron" (uniform H_res) the streams collapse onto
    # one (the README's Initialisation table, the `init` profile).
    init: InitPreset = "onehot"
    sinkhorn_iters: int = Field(default=20, ge=1)  # t_max of Eq. 12


def _triton_mhc_maps(*args: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    import mhc_kernels

    return mhc_kernels.mhc_maps(*args)


class MHCMaps(nn.Module):
    """mHC's manifold-constrained maps (Eq. 10-12) for one residual layer."""

    # The fused kernels cover all three maps; an ablation (fewer maps) runs torch or fast.
    FULL = {"torch": ops.mhc_maps, "fast": fastops.mhc_maps, "triton": _triton_mhc_maps}
    PARTIAL = {"torch": ops.mhc_maps_partial, "fast": fastops.mhc_maps_partial}

    def __init__(self, cfg: ModelConfig, layer_index: int) -> None:
        super().__init__()
        knobs: MHCKnobs = cfg.mixing  # type: ignore[assignment]
        n, C = cfg.n_streams, cfg.d_model
        self.n, self.iters, self.eps, self.enabled = n, knobs.sinkhorn_iters, knobs.map_norm_eps, knobs.maps
        self.kernels = cfg.kernels
        preset = map_init.PRESETS[knobs.init]
        widths = {"pre": n, "post": n, "res": n * n}
        width = sum(widths[m] for m in ops.MAP_NAMES if m in self.enabled)
        self.phi = nn.Parameter(torch.empty(n * C, width))
        map_init.init_projection(preset, self.phi)
        alpha = knobs.alpha_init if preset.alpha is None else preset.alpha
        self.alpha = nn.ParameterDict(
            {m: nn.Parameter(torch.tensor(alpha)) for m in ops.MAP_NAMES if m in self.enabled}
        )
        biases = {"pre": map_init.pre_logits(preset, n, layer_index),
                  "post": map_init.post_logits(preset, n, layer_index), "res": map_init.res_logits(preset, n)}
        self.b_pre, self.b_post, self.b_res = (
            nn.Parameter(biases[m]) if m in self.enabled else None for m in ("pre", "post", "res")
        )

    @property
    def sinkhorn_iters(self) -> int:
        """Sinkhorn's iterations (t_max): the probes measure how far from converged they leave H_res."""
        return self.iters

    @torch.no_grad()
    def res_logits(self, x: torch.Tensor) -> torch.Tensor | None:
        """H_res's logits ``[..., n, n]`` before Sinkhorn (``alpha_res * x' phi_res + b_res``), for the
        probes (logit span, iterations to converge); None when H_res is not learned."""
        if self.b_res is None:
            return None
        dtype = ops.compute_dtype(x.dtype)
        x_flat = x.flatten(-2).to(dtype)
        proj = torch.nn.functional.rms_norm(x_flat, (x_flat.shape[-1],), eps=self.eps) @ self.phi.to(dtype)
        n = self.n
        res = proj[..., proj.shape[-1] - n * n:].unflatten(-1, (n, n))  # pre, post, res: res is last
        return self.alpha["res"].to(dtype) * res + self.b_res.to(dtype)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x_flat = x.flatten(-2)
        if len(self.enabled) == 3:
            fn = self.FULL[dispatch.pick(self.kernels, x.device.type, self.FULL)]
            alpha = torch.stack([self.alpha["pre"], self.alpha["post"], self.alpha["res"]])
            return fn(x_flat, self.phi, alpha, self.b_pre, self.b_post, self.b_res, self.iters, self.eps)
        fn = self.PARTIAL[dispatch.pick(self.kernels, x.device.type, self.PARTIAL)]
        return fn(x_flat, self.phi, dict(self.alpha), self.b_pre, self.b_post, self.b_res, self.n,
                  self.iters, self.eps)


class MHC(Variant):
    name = "mhc"
    label = "mHC"
    summary = "mHC: sigmoid H_pre / H_post, Sinkhorn-Knopp H_res (arXiv:2512.24880, Eq. 10-12)"
    marker = "o"
    color = "#1b9e77"
    knobs = MHCKnobs
    no_decay = ("b_pre", "b_post", "b_res")
    projections = ("phi",)
    implementations = {"torch": "ops.mhc_maps (log-domain Sinkhorn, reference)",
                       "fast": "fastops.mhc_maps (C kernels, one-node Sinkhorn)",
                       "triton": "mhc_kernels.mhc_maps (fused; all three maps only)"}
    id_names = {"sinkhorn_iters": "it", "init": "init-"}

    def build_maps(self, cfg: ModelConfig, layer_index: int) -> nn.Module:
        return MHCMaps(cfg, layer_index)

    def extra_flops(self, knobs: MHCKnobs, n: int, d_model: int) -> int:  # type: ignore[override]
        """The flattened ``nC`` projected onto the enabled maps' ``n^2 + 2n`` logits, plus the mixes."""
        return projected_maps_flops(knobs.maps, n, d_model, n * n)
