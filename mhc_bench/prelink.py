"""``H_pre x``'s gradient for x, folded into the maps' backward (the fast path's one cross-op fusion).

In a residual layer x feeds three ops, the maps (``RMSNorm(x) @ W``),
``H_pre x`` and ``H_res x + H_post^T y``, and autograd sums their three
``dL/dx`` terms, each a full ``[tokens, n, C]`` tensor: the pre op's
``h_pre g^T`` alone costs a write and the sum a read-read-write. Here the pre
op's backward hands its small ``[tokens, C]`` input gradient ``g`` (and
``h_pre``) to the maps' backward through a :class:`PreLink`, and returns no
``dx``; the maps' backward adds ``h_pre g^T`` in the same pass that adds its
own RMSNorm term (``mhc_bench.cpukernels``' ``maps_dx_epilogue``).

The order is safe by construction: ``h_pre`` is computed from the maps'
projection, so autograd runs the pre op's backward before the maps'. A link
is made only in eager mode with grad enabled, only when ``h_pre`` is a learned
map of that projection, and it is used only for the same stream tensor
(same storage, shape and a contiguous layout); anything else takes the
ordinary, unlinked path.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from mhc_bench.cpukernels.ops import stream_pre_dh_impl, stream_pre_impl

_ATTR = "_mhc_pre_link"


class PreLink:
    """Carries ``(h_pre, g)`` from ``H_pre x``'s backward to the maps' backward of the same x."""

    __slots__ = ("g", "h_pre", "key")

    def __init__(self, x: torch.Tensor) -> None:
        self.key = _key(x)
        self.h_pre: torch.Tensor | None = None
        self.g: torch.Tensor | None = None

    def take(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The handed-over ``(h_pre [T, n], g [T, C])``, once."""
        if self.g is None or self.h_pre is None:
            return None
        out, self.h_pre, self.g = (self.h_pre, self.g), None, None
        return out


def _key(x: torch.Tensor) -> tuple[int, int, bool]:
    return x.data_ptr(), x.numel(), x.is_contiguous()


def new_link(x: torch.Tensor) -> PreLink | None:
    """A link for the maps of ``x`` when linking applies (eager, grad enabled, contiguous x)."""
    if torch.compiler.is_compiling() or not torch.is_grad_enabled() or not x.is_contiguous():
        return None
    return PreLink(x)


def attach(h_pre: torch.Tensor, link: PreLink | None) -> torch.Tensor:
    """Mark ``h_pre`` (computed from the linked maps' projection) as linked."""
    if link is not None and h_pre.requires_grad:
        setattr(h_pre, _ATTR, link)
    return h_pre


def link_of(h_pre: torch.Tensor, x: torch.Tensor) -> PreLink | None:
    """The link to use for ``H_pre x``, or None (no link, or x is not the maps' stream tensor)."""
    link = getattr(h_pre, _ATTR, None)
    if link is None or torch.compiler.is_compiling() or link.key != _key(x):
        return None
    return link


class LinkedPre(torch.autograd.Function):
    """``H_pre x`` whose backward returns ``dh`` and hands ``(h_pre, g)`` to the maps for ``dx``."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, x: torch.Tensor, link: PreLink) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(h, x)
        ctx.link = link
        return stream_pre_impl(h, x)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:  # type: ignore[override]
        h, x = ctx.saved_tensors
        g = grad.contiguous()
        ctx.link.h_pre, ctx.link.g = h, g
        dh = stream_pre_dh_impl(h, x, g) if ctx.needs_input_grad[0] else None
        return dh, None, None
