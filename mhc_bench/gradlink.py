"""The stream ops' gradients for x, folded into the maps' backward (the fast path's cross-op fusion).

In a residual layer x feeds three ops, the maps (``RMSNorm(x) @ W``),
``H_pre x`` and ``H_res x + H_post^T y``, and autograd sums their three
``dL/dx`` terms, each a full ``[tokens, n, C]`` tensor: the pre op's
``h_pre g^T`` alone costs a write, and each sum a read-read-write. Here the
two stream ops' backwards hand their shares to the maps' backward through a
:class:`GradLink` and return no ``dx``:

- ``H_pre x`` hands its small ``[tokens, C]`` input gradient ``g`` (and
  ``h_pre``); the maps' backward adds ``h_pre g^T`` in the same pass that
  adds its own RMSNorm term;
- ``H_res x + H_post^T y`` hands its ``dx`` (computed as before), which that
  pass adds last, on its own: the sum has the bits autograd's would have
  (``mhc_bench.cpukernels``' ``maps_dx_epilogue``).

``dx``'s bits are autograd's: it sums the shares in the order they arrive
(post_res, then pre, then the maps), and with pre's linked the one sum left is
post_res + maps, which is exact in either order; so post_res's share is
linked only where pre's is (``pre_linked``), never alone.

The order is safe by construction: the linked maps are computed from the
maps' projection, so autograd runs both stream ops' backwards before the
maps'. A link is made only in eager mode with grad enabled, only when the
map is a learned map of that projection, and it is used only for the same
stream tensor (same storage, shape and a contiguous layout); anything else
takes the ordinary, unlinked path.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from mhc_bench.cpukernels import ops as kernel_ops

_ATTR = "_mhc_grad_link"


class GradLink:
    """Carries the stream ops' ``dx`` shares to the maps' backward of the same x."""

    __slots__ = ("g", "h_pre", "key", "post_dx", "pre_linked")

    def __init__(self, x: torch.Tensor) -> None:
        self.key = _key(x)
        self.h_pre: torch.Tensor | None = None
        self.g: torch.Tensor | None = None
        self.post_dx: torch.Tensor | None = None
        self.pre_linked = False  # set by LinkedPre's forward; post_res links only then

    def take_pre(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The handed-over ``(h_pre [T, n], g [T, C])`` of ``H_pre x``, once."""
        if self.g is None or self.h_pre is None:
            return None
        out, self.h_pre, self.g = (self.h_pre, self.g), None, None
        return out

    def take_post_dx(self) -> torch.Tensor | None:
        """The handed-over ``dx [T, n, C]`` of ``H_res x + H_post^T y``, once."""
        out, self.post_dx = self.post_dx, None
        return out


def _key(x: torch.Tensor) -> tuple[int, int, bool]:
    return x.data_ptr(), x.numel(), x.is_contiguous()


def new_link(x: torch.Tensor) -> GradLink | None:
    """A link for the maps of ``x`` when linking applies (eager, grad enabled, contiguous x)."""
    if torch.compiler.is_compiling() or not torch.is_grad_enabled() or not x.is_contiguous():
        return None
    return GradLink(x)


def attach(h: torch.Tensor, link: GradLink | None) -> torch.Tensor:
    """Mark map ``h`` (computed from the linked maps' projection) as linked."""
    if link is not None and h.requires_grad:
        setattr(h, _ATTR, link)
    return h


def link_of(x: torch.Tensor, *maps: torch.Tensor) -> GradLink | None:
    """The link of the first linked map, or None (no link, or x is not the maps' stream tensor)."""
    link = next((found for h in maps if (found := getattr(h, _ATTR, None)) is not None), None)
    if link is None or torch.compiler.is_compiling() or link.key != _key(x):
        return None
    return link


def post_res_link_of(x: torch.Tensor, h_res: torch.Tensor, h_post: torch.Tensor) -> GradLink | None:
    """The link for ``H_res x + H_post^T y``: only where ``H_pre x`` of the same maps is linked."""
    link = link_of(x, h_res, h_post)
    return link if link is not None and link.pre_linked else None


class LinkedPre(torch.autograd.Function):
    """``H_pre x`` whose backward returns ``dh`` and hands ``(h_pre, g)`` to the maps for ``dx``."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, x: torch.Tensor, link: GradLink) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(h, x)
        ctx.link, link.pre_linked = link, True
        return kernel_ops.stream_pre_impl(h, x)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:  # type: ignore[override]
        h, x = ctx.saved_tensors
        g = grad.contiguous()
        ctx.link.h_pre, ctx.link.g = h, g
        dh = kernel_ops.stream_pre_dh_impl(h, x, g) if ctx.needs_input_grad[0] else None
        return dh, None, None


class LinkedPostRes(torch.autograd.Function):
    """``H_res x + H_post^T y`` whose backward hands its ``dx`` to the maps instead of returning it."""

    @staticmethod
    def forward(ctx, h_res: torch.Tensor, x: torch.Tensor, h_post: torch.Tensor,  # type: ignore[override]
                y: torch.Tensor, link: GradLink) -> torch.Tensor:
        ctx.save_for_backward(h_res, x, h_post, y)
        ctx.link = link
        return kernel_ops.stream_post_res_impl(h_res, x, h_post, y)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        d_hr, d_x, d_hp, d_y = kernel_ops.stream_post_res_backward_impl(*ctx.saved_tensors, grad.contiguous())
        ctx.link.post_dx = d_x
        return d_hr, None, d_hp, d_y, None
