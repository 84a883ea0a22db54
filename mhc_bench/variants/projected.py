"""Maps from one projection of the normalised stream, with a pluggable H_res head.

The shape of mHC's Eq. 10-11 with the Sinkhorn step swapped out: one matmul of
``RMSNorm(x_flat)`` (the flattened ``n*C`` stream, no scale of its own) with ``phi``
gives the logits of the learned maps in the order pre (n), post (n), res (the head's
width); each is ``alpha * logits + b``; ``H_pre = sigmoid``, ``H_post = 2 sigmoid`` and
``H_res = head(logits)``. The variants built on it (``mhc_lite``, ``rowstoch``) differ only
in the head, its width and their initial biases. The maps are computed in fp32 with
autocast off (the precision policy of :mod:`mhc_bench.ops`); a disabled map takes its
fixed value (H_pre = 1/n, H_post = 1, H_res = I).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from mhc_bench import dispatch, fastops, ops

ResHead = Callable[[torch.Tensor], torch.Tensor]  # [..., width] logits -> [..., n, n] H_res


@dataclass(frozen=True)
class ProjectedInit:
    """Initial values: the static logits of each map and how the projection starts."""

    pre: torch.Tensor  # [n]
    post: torch.Tensor  # [n]
    res: torch.Tensor  # [res_width]
    alpha: float
    projection: Callable[[torch.Tensor], None]  # fills phi in place


def norm_projection(x_flat: torch.Tensor, phi: torch.Tensor, eps: float, path: str) -> torch.Tensor:
    """``RMSNorm(x_flat) @ phi`` in the compute dtype: the fast path's kernel or the reference."""
    if path == "fast":
        return fastops.rms_norm_matmul(x_flat, phi, eps)
    dtype = ops.compute_dtype(x_flat.dtype)
    return F.rms_norm(x_flat.to(dtype), (x_flat.shape[-1],), eps=eps) @ phi.to(dtype)


class ProjectedMaps(nn.Module):
    """The maps of one residual layer from one projection and a H_res ``head``."""

    IMPLEMENTATIONS = ("torch", "fast")

    def __init__(self, n: int, d_model: int, maps: tuple[str, ...], res_width: int, head: ResHead,
                 init: ProjectedInit, eps: float, kernels: str) -> None:
        super().__init__()
        self.n, self.enabled, self.head, self.eps, self.kernels = n, maps, head, eps, kernels
        widths = {"pre": n, "post": n, "res": res_width}
        self.widths = {m: widths[m] for m in ops.MAP_NAMES if m in maps}
        self.phi = nn.Parameter(torch.empty(n * d_model, sum(self.widths.values())))
        init.projection(self.phi)
        self.alpha = nn.ParameterDict({m: nn.Parameter(torch.tensor(init.alpha)) for m in self.widths})
        static = {"pre": init.pre, "post": init.post, "res": init.res}
        self.b_pre, self.b_post, self.b_res = (
            nn.Parameter(static[m].clone().float()) if m in maps else None for m in ("pre", "post", "res")
        )

    @torch.no_grad()
    def res_logits(self, x: torch.Tensor) -> torch.Tensor | None:
        """The H_res head's input logits ``[..., width]`` (for the probes' logit span), or None."""
        if self.b_res is None:
            return None
        dtype = ops.compute_dtype(x.dtype)
        x_flat = x.flatten(-2).to(dtype)
        proj = norm_projection(x_flat, self.phi, self.eps, "torch")
        res = proj[..., proj.shape[-1] - self.widths["res"]:]
        return self.alpha["res"].to(dtype) * res + self.b_res.to(dtype)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        path = dispatch.pick(self.kernels, x.device.type, self.IMPLEMENTATIONS)
        x_flat = x.flatten(-2)
        dtype = ops.compute_dtype(x.dtype)
        with torch.autocast(device_type=x.device.type, enabled=False):
            proj = norm_projection(x_flat, self.phi, self.eps, path)
            chunks = dict(zip(self.widths, proj.split(list(self.widths.values()), dim=-1), strict=True))
            h_pre, h_post, h_res = ops.static_maps(x.shape[:-2], self.n, dtype, x.device)
            logits = {m: self.alpha[m].to(dtype) * chunks[m] + bias.to(dtype)
                      for m, bias in (("pre", self.b_pre), ("post", self.b_post), ("res", self.b_res))
                      if bias is not None}
            if "pre" in logits:
                h_pre = torch.sigmoid(logits["pre"])
            if "post" in logits:
                h_post = 2.0 * torch.sigmoid(logits["post"])
            if "res" in logits:
                h_res = self.head(logits["res"])
        return h_pre, h_post, h_res
