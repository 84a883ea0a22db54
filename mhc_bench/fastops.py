"""Exact fast path of the n-stream ops on CPU (``kernels: fast``, what ``auto`` picks on CPU).

Same signatures, semantics and precision policy as :mod:`mhc_bench.ops` (the
readable reference and the ground truth these are tested against); what
differs is how the work is laid out for a CPU, where eager small ops cost
their dispatch overhead and the ``[..., n, C]`` stream ops cost memory traffic:

- Sinkhorn-Knopp is one autograd node (``torch.ops.mhc_bench.sinkhorn``): the
  forward iterates in the exp domain and saves only the logits; the backward
  replays the iterations and differentiates each normalisation in closed
  form, instead of taping 40 log-sum-exps. A fused C kernel per block of
  tokens (see :mod:`mhc_bench.cpukernels`).
- ``H_pre x`` and ``H_res x + H_post^T y`` are fused C kernels, forward and
  backward each one pass over the ``[tokens, n, C]`` tensors (the backward of
  ``post_res`` gives all four gradients in that pass); no batched 4 x 4
  matmuls, no ``[..., n, n, C]`` broadcasts, no fp32 copy of an fp32 stream.
- ``RMSNorm(x) @ W`` (both maps) never materialises the normalised ``x``:
  ``(x @ W) * rstd`` forward, with rstd's sums of squares in the projection's
  pass over x (eager: a C kernel tiled for W's few columns, where BLAS is slow;
  compiled: torch ops, which inductor fuses), and
  a backward that reads ``x`` once more (:class:`_NormMatmul`); nothing
  ``[..., n, C]``-sized is saved but ``x``.
- The two stream ops hand their shares of ``dL/dx`` to that backward, which
  adds them in its one pass over ``x`` instead of autograd's separate sums
  (:mod:`mhc_bench.gradlink`; same bits).

The fused ops are torch custom ops, so a whole-model ``torch.compile``
(``kernels: compile``) runs them as they are. Every function here runs with
autocast off and computes in ``ops.compute_dtype`` (fp32, fp64 for fp64
inputs); the maps are returned in that dtype and the stream ops return the
stream's dtype.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from mhc_bench.cpukernels import ops as kernel_ops
from mhc_bench.gradlink import GradLink, LinkedPostRes, LinkedPre, attach, link_of, new_link, post_res_link_of
from mhc_bench.ops import compute_dtype, static_maps


def _no_autocast(t: torch.Tensor) -> torch.autocast:
    return torch.autocast(device_type=t.device.type, enabled=False)


def _rows(t: torch.Tensor, *tail: int) -> torch.Tensor:
    """``t`` as a contiguous ``[tokens, *tail]`` (what the kernels take; a view when it already is)."""
    return t.reshape(-1, *tail).contiguous()


# -- Sinkhorn-Knopp ---------------------------------------------------------------------------------


def sinkhorn_knopp(logits: torch.Tensor, iters: int) -> torch.Tensor:
    """``ops.sinkhorn_knopp`` (same iterates, same gradients) as one autograd node.

    Falls back to the log-domain reference if the exp domain underflows (a row
    whose every logit sits ~90 below its column's max in fp32): exact in both cases.
    """
    if iters < 1:
        raise ValueError(f"sinkhorn iters must be >= 1, got {iters}")
    n = logits.shape[-1]
    with _no_autocast(logits):
        z = _rows(logits.to(compute_dtype(logits.dtype)), n, n)
        h = kernel_ops.sinkhorn(z, iters).view(logits.shape).to(logits.dtype)
    if not torch.compiler.is_compiling() and not bool(torch.isfinite(h).all()):
        from mhc_bench.ops import sinkhorn_knopp as reference

        return reference(logits, iters)
    return h


# -- RMSNorm(x) @ W -----------------------------------------------------------------------------------


class _NormMatmul(torch.autograd.Function):
    """``rms_norm(x, eps) @ w`` over x's last dim, as ``(x @ w) * rstd``.

    Backward (``r = rstd``, ``p = rms_norm(x) @ w``, ``K`` = x's last dim):
    ``dx = (r g) @ w^T - x r^2 <g, p> / K`` and ``dw = x^T (r g)``; it reads
    ``x`` (already saved by the layer) and small ``[rows, W]`` tensors only.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, eps: float,  # type: ignore[override]
                link: GradLink | None) -> torch.Tensor:
        with _no_autocast(x):
            dtype = compute_dtype(x.dtype)
            x2 = x.reshape(-1, x.shape[-1])
            wc = w.to(dtype)
            proj, rstd = kernel_ops.norm_matmul(x2.to(dtype), wc, eps)
        ctx.save_for_backward(x2, wc, rstd, proj)
        ctx.shape, ctx.link = x.shape, link
        return proj.view(*x.shape[:-1], w.shape[-1])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        x2, wc, rstd, proj = ctx.saved_tensors
        with _no_autocast(x2):
            g = grad.reshape(proj.shape).to(wc.dtype)
            xc = x2.to(wc.dtype)
            gr = g * rstd
            dx = dw = None
            if ctx.needs_input_grad[0]:
                coef = (g * proj).sum(dim=-1, keepdim=True).mul_(rstd.square()).div_(-x2.shape[-1])
                dx = torch.mm(gr, wc.t())
                link = ctx.link
                handed = link.take_pre() if link is not None else None
                post_dx = link.take_post_dx() if link is not None else None
                if handed is None:
                    dx.addcmul_(xc, coef)
                    if post_dx is not None:
                        dx.add_(post_dx.view(dx.shape))
                else:  # add the stream ops' shares too, in the same pass (mhc_bench.gradlink)
                    h_pre, g_in = handed
                    tokens, n = h_pre.shape
                    coef = coef.view(tokens, -1).expand(tokens, n).contiguous()  # per token or per stream
                    shape = (tokens, n, g_in.shape[-1])
                    kernel_ops.maps_dx_epilogue_impl(dx.view(shape), xc.view(shape), coef, h_pre, g_in,
                                                     None if post_dx is None else post_dx.view(shape))
                dx = dx.view(ctx.shape).to(x2.dtype)
            if ctx.needs_input_grad[1]:
                dw = kernel_ops.norm_matmul_dw(xc, gr)
            return dx, dw, None, None


def rms_norm_matmul(
    x: torch.Tensor, w: torch.Tensor, eps: float | None = None, link: GradLink | None = None
) -> torch.Tensor:
    """``F.rms_norm(x, (K,), eps=eps) @ w`` in the compute dtype; ``eps=None`` is rms_norm's default.

    ``link``: see :mod:`mhc_bench.gradlink` (the stream ops' dx shares added in this op's backward).
    """
    if eps is None:
        eps = torch.finfo(compute_dtype(x.dtype)).eps
    return _NormMatmul.apply(x, w, eps, link)


# -- the maps -------------------------------------------------------------------------------------------


def mhc_maps_partial(
    x_flat: torch.Tensor,
    phi: torch.Tensor,
    alpha: dict[str, torch.Tensor],
    b_pre: torch.Tensor | None,
    b_post: torch.Tensor | None,
    b_res: torch.Tensor | None,
    n: int,
    iters: int,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``ops.mhc_maps_partial`` on the fast path (same arguments, values and gradients)."""
    dtype = compute_dtype(x_flat.dtype)
    lead = x_flat.shape[:-1]
    with _no_autocast(x_flat):
        learned = any(b is not None for b in (b_pre, b_post, b_res))
        link = new_link(x_flat) if learned and x_flat.dtype == dtype else None
        proj = rms_norm_matmul(x_flat, phi, eps, link)
        h_pre, h_post, h_res = static_maps(lead, n, dtype, proj.device)
        offset = 0
        if b_pre is not None:
            h_pre = attach(torch.sigmoid(alpha["pre"].to(dtype) * proj[..., :n] + b_pre.to(dtype)), link)
            offset = n
        if b_post is not None:
            h_post = attach(2.0 * torch.sigmoid(alpha["post"].to(dtype) * proj[..., offset : offset + n]
                                                + b_post.to(dtype)), link)
            offset += n
        if b_res is not None:
            logits = alpha["res"].to(dtype) * proj[..., offset : offset + n * n].unflatten(-1, (n, n))
            h_res = attach(sinkhorn_knopp(logits + b_res.to(dtype), iters), link)
    return h_pre, h_post, h_res


def mhc_maps(
    x_flat: torch.Tensor,
    phi: torch.Tensor,
    alpha: torch.Tensor,
    b_pre: torch.Tensor,
    b_post: torch.Tensor,
    b_res: torch.Tensor,
    iters: int,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``ops.mhc_maps`` on the fast path: ``x_flat [..., n*C] -> (h_pre, h_post, h_res)``."""
    gates = {"pre": alpha[0], "post": alpha[1], "res": alpha[2]}
    return mhc_maps_partial(x_flat, phi, gates, b_pre, b_post, b_res, b_pre.shape[-1], iters, eps)


def hc_maps(
    x: torch.Tensor,
    w: torch.Tensor,
    scale: dict[str, torch.Tensor],
    s_pre: torch.Tensor | None,
    s_post: torch.Tensor | None,
    s_res: torch.Tensor | None,
    eps: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hyper-Connections' dynamic maps (``model.HCMaps``) from ``x [..., n, C]``, in fp32.

    ``H = S + scale * tanh(rms_norm(x) @ w)`` per input stream; ``w``'s columns
    hold the enabled maps in the order pre (1), post (1), res (n); a map whose
    static part is ``None`` is disabled (H_pre = 1/n, H_post = 1, H_res = I).
    """
    dtype = compute_dtype(x.dtype)
    n = x.shape[-2]
    with _no_autocast(x):
        learned = any(s is not None for s in (s_pre, s_post, s_res))
        link = new_link(x) if learned and x.dtype == dtype else None
        dyn = torch.tanh(rms_norm_matmul(x, w, eps, link))  # [..., n_in, width]
        h_pre, h_post, h_res = static_maps(x.shape[:-2], n, dtype, x.device)
        offset = 0
        if s_pre is not None:
            h_pre = attach(s_pre.to(dtype) + scale["pre"].to(dtype) * dyn[..., 0], link)
            offset = 1
        if s_post is not None:
            h_post = attach(s_post.to(dtype) + scale["post"].to(dtype) * dyn[..., offset], link)
            offset += 1
        if s_res is not None:
            # dyn[..., j, offset + i]: input stream j's weight into output stream i.
            h_res = attach(s_res.to(dtype) + scale["res"].to(dtype)
                           * dyn[..., offset : offset + n].transpose(-1, -2), link)
    return h_pre, h_post, h_res


# -- stream ops ------------------------------------------------------------------------------------------


def stream_pre(h_pre: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``ops.stream_pre`` on the fast path: ``[..., n] x [..., n, C] -> [..., C]`` (x's dtype)."""
    n, c = x.shape[-2:]
    dtype = compute_dtype(x.dtype)
    with _no_autocast(x):
        link = link_of(x, h_pre) if x.dtype == dtype else None
        if link is not None:  # dx goes through the maps' backward (mhc_bench.gradlink)
            out = LinkedPre.apply(_rows(h_pre.to(dtype), n), _rows(x, n, c), link)
        else:
            out = kernel_ops.stream_pre(_rows(h_pre.to(dtype), n), _rows(x.to(dtype), n, c))
        return out.view(*x.shape[:-2], c).to(x.dtype)


def stream_post_res(
    h_res: torch.Tensor, x: torch.Tensor, h_post: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """``ops.stream_post_res`` on the fast path: ``h_res @ x + h_post^T y`` (x's dtype)."""
    n, c = x.shape[-2:]
    dtype = compute_dtype(x.dtype)
    with _no_autocast(x):
        args = (_rows(h_res.to(dtype), n, n), _rows(x.to(dtype), n, c), _rows(h_post.to(dtype), n),
                _rows(y.to(dtype), c))
        link = post_res_link_of(x, h_res, h_post) if x.dtype == dtype else None
        # linked: dx goes through the maps' backward (mhc_bench.gradlink)
        out = kernel_ops.stream_post_res(*args) if link is None else LinkedPostRes.apply(*args, link)
        return out.view(x.shape).to(x.dtype)


__all__ = ["hc_maps", "mhc_maps", "mhc_maps_partial", "rms_norm_matmul", "sinkhorn_knopp",
           "stream_post_res", "stream_pre"]
