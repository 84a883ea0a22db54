"""Exact fast path of the n-stream ops for eager CPU (``kernels: fast``; ``auto`` on CPU).

Same signatures, semantics and precision policy as :mod:`mhc_bench.ops` (the
readable reference and the ground truth these are tested against); what
differs is how the work is laid out for a CPU, where eager small ops cost
their dispatch overhead and the ``[..., n, C]`` stream ops cost memory
traffic:

- Sinkhorn-Knopp is one autograd node: the forward iterates in the exp domain
  (2 kernels per half-step instead of logsumexp's ~6; the column shift by the
  max keeps it exact, see :class:`_Sinkhorn`) and saves only the logits; the
  backward replays the iterations once and differentiates each normalisation
  in closed form, instead of taping 40 log-sum-exps.
- ``RMSNorm(x) @ W`` (both maps) never materialises the normalised ``x``:
  ``(x @ W) * rstd`` forward, and a backward that reads ``x`` once more
  (:class:`_NormMatmul`); nothing ``[..., n, C]``-sized is saved but ``x``.
- ``stream_pre`` / ``stream_post_res`` are custom autograd functions whose
  forward and backward are single batched matmuls (the x @ [x; y]^T style
  reductions included), with no ``[..., n, n, C]`` broadcast and no fp32 copy
  of an fp32 stream.

Every function here runs with autocast off and computes in
``ops.compute_dtype`` (fp32, fp64 for fp64 inputs); the maps are returned in
that dtype and the stream ops return the stream's dtype.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from mhc_bench.cpukernels import kernels_for
from mhc_bench.ops import compute_dtype, static_maps


def _no_autocast(t: torch.Tensor) -> torch.autocast:
    return torch.autocast(device_type=t.device.type, enabled=False)


def _rows(t: torch.Tensor, *tail: int) -> torch.Tensor:
    """``t`` as a contiguous ``[tokens, *tail]``.

    Contiguous because CPU ``bmm`` falls back to a per-token loop of ``addmm``
    on broadcast (stride-0) operands such as the first layer's copied streams.
    """
    return t.reshape(-1, *tail).contiguous()


# -- Sinkhorn-Knopp ---------------------------------------------------------------------------------


def _sinkhorn_iterates(
    z: torch.Tensor, iters: int, trace: list[tuple[torch.Tensor, torch.Tensor]] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(H, M0)``: Sinkhorn of logits ``z`` laid out ``[n_out, n_in, tokens]``, and its start ``M0``.

    The token axis is last so that every reduction and broadcast runs over
    long contiguous rows (over ``[tokens, n, n]`` each op would loop over
    inner extents of n). ``M0 = exp(z - max over each column)``: column
    normalisation removes any per-column factor, so the shift changes no
    iterate after the first half step (the reference's first logsumexp does
    the same) and ``exp`` cannot overflow. With ``trace`` every half-step's
    ``(output, divisor)`` is kept for the backward.
    """
    m0 = (z - z.amax(dim=0, keepdim=True)).exp_()
    m = m0
    for _ in range(iters):
        for dim in (0, 1):  # columns (sum over output streams), then rows (over input streams)
            s = m.sum(dim=dim, keepdim=True)
            m = m / s
            if trace is not None:
                trace.append((m, s))
    return m, m0


def _tokens_last(t: torch.Tensor) -> torch.Tensor:
    """``[tokens, n, n] -> [n, n, tokens]`` (contiguous)."""
    return t.permute(1, 2, 0).contiguous()


class _Sinkhorn(torch.autograd.Function):
    """Sinkhorn-Knopp as one node: saves the logits, replays the iterates in backward.

    The C kernel when there is one, else torch ops over ``[n, n, tokens]``.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, iters: int) -> torch.Tensor:  # type: ignore[override]
        n = logits.shape[-1]
        with _no_autocast(logits):
            z = _rows(logits.to(compute_dtype(logits.dtype)), n, n)
            k = kernels_for(z)
            if k is not None:
                h = torch.empty_like(z)
                k.call("sinkhorn_fwd", (z.shape[0], n, iters), z, h)
            else:
                h = _sinkhorn_iterates(_tokens_last(z), iters)[0].permute(2, 0, 1)
        ctx.save_for_backward(z)
        ctx.iters, ctx.dtype = iters, logits.dtype
        return h.reshape(logits.shape).to(logits.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (z,) = ctx.saved_tensors
        n = z.shape[-1]
        with _no_autocast(z):
            g = _rows(grad.to(z.dtype), n, n)
            k = kernels_for(z, g)
            if k is not None:
                dz = torch.empty_like(z)
                k.call("sinkhorn_bwd", (z.shape[0], n, ctx.iters), z, g, dz)
                return dz.view(grad.shape).to(ctx.dtype), None
            trace: list[tuple[torch.Tensor, torch.Tensor]] = []
            _, m0 = _sinkhorn_iterates(_tokens_last(z), ctx.iters, trace)
            gt = _tokens_last(g)
            # B = A / sum(A, dim): dA = (dB - sum(dB * B, dim)) / sum(A, dim)
            for step in reversed(range(len(trace))):
                out, s = trace[step]
                dim = step % 2
                gt = (gt - (gt * out).sum(dim=dim, keepdim=True)).div_(s)
            dz = gt.mul_(m0).permute(2, 0, 1)
            return dz.reshape(grad.shape).to(ctx.dtype), None


def sinkhorn_knopp(logits: torch.Tensor, iters: int) -> torch.Tensor:
    """``ops.sinkhorn_knopp`` (same iterates, same gradients) as one autograd node.

    Falls back to the log-domain reference if the exp domain underflows (a row
    whose every logit sits ~90 below its column's max in fp32): exact in both cases.
    """
    if iters < 1:
        raise ValueError(f"sinkhorn iters must be >= 1, got {iters}")
    h = _Sinkhorn.apply(logits, iters)
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
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:  # type: ignore[override]
        with _no_autocast(x):
            dtype = compute_dtype(x.dtype)
            x2 = x.reshape(-1, x.shape[-1])
            xc, wc = x2.to(dtype), w.to(dtype)
            k = x2.shape[-1]
            rstd = (torch.linalg.vector_norm(xc, dim=-1, keepdim=True).square_().div_(k).add_(eps)).rsqrt_()
            # (w^T x^T)^T: MKL is 1.1-4x faster at this orientation for thin w (W = 6 or 24 columns).
            proj = torch.mm(wc.t(), xc.t()).t().mul_(rstd)
        ctx.save_for_backward(x2, wc, rstd, proj)
        ctx.shape = x.shape
        return proj.view(*x.shape[:-1], w.shape[-1])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:  # type: ignore[override]
        x2, wc, rstd, proj = ctx.saved_tensors
        with _no_autocast(x2):
            g = grad.reshape(proj.shape).to(wc.dtype)
            xc = x2.to(wc.dtype)
            gr = g * rstd
            dx = dw = None
            if ctx.needs_input_grad[0]:
                coef = (g * proj).sum(dim=-1, keepdim=True).mul_(rstd.square()).div_(-x2.shape[-1])
                dx = torch.mm(gr, wc.t()).addcmul_(xc, coef).view(ctx.shape).to(x2.dtype)
            if ctx.needs_input_grad[1]:
                dw = torch.mm(gr.t(), xc).t()  # 2x faster than xc^T @ gr for thin gr
            return dx, dw, None


def rms_norm_matmul(x: torch.Tensor, w: torch.Tensor, eps: float | None = None) -> torch.Tensor:
    """``F.rms_norm(x, (K,), eps=eps) @ w`` in the compute dtype; ``eps=None`` is rms_norm's default."""
    if eps is None:
        eps = torch.finfo(compute_dtype(x.dtype)).eps
    return _NormMatmul.apply(x, w, eps)


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
        proj = rms_norm_matmul(x_flat, phi, eps)
        h_pre, h_post, h_res = static_maps(lead, n, dtype, proj.device)
        offset = 0
        if b_pre is not None:
            h_pre = torch.sigmoid(alpha["pre"].to(dtype) * proj[..., :n] + b_pre.to(dtype))
            offset = n
        if b_post is not None:
            h_post = 2.0 * torch.sigmoid(alpha["post"].to(dtype) * proj[..., offset : offset + n]
                                         + b_post.to(dtype))
            offset += n
        if b_res is not None:
            logits = alpha["res"].to(dtype) * proj[..., offset : offset + n * n].unflatten(-1, (n, n))
            h_res = sinkhorn_knopp(logits + b_res.to(dtype), iters)
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
        dyn = torch.tanh(rms_norm_matmul(x, w, eps))  # [..., n_in, width]
        h_pre, h_post, h_res = static_maps(x.shape[:-2], n, dtype, x.device)
        offset = 0
        if s_pre is not None:
            h_pre = s_pre.to(dtype) + scale["pre"].to(dtype) * dyn[..., 0]
            offset = 1
        if s_post is not None:
            h_post = s_post.to(dtype) + scale["post"].to(dtype) * dyn[..., offset]
            offset += 1
        if s_res is not None:
            # dyn[..., j, offset + i]: input stream j's weight into output stream i.
            h_res = s_res.to(dtype) + scale["res"].to(dtype) * dyn[..., offset : offset + n].transpose(-1, -2)
    return h_pre, h_post, h_res


# -- stream ops ------------------------------------------------------------------------------------------


class _StreamPre(torch.autograd.Function):
    """``out[t] = sum_j h[t, j] x[t, j]``: the C kernel, else one batched ``[1, n] @ [n, C]`` matmul."""

    @staticmethod
    def forward(ctx, h_pre: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        n, c = x.shape[-2:]
        dtype = compute_dtype(x.dtype)
        with _no_autocast(x):
            h, xs = _rows(h_pre, n).to(dtype), _rows(x, n, c)
            xc = xs.to(dtype)
            k = kernels_for(h, xc)
            if k is not None:
                out = xc.new_empty(xc.shape[0], c)
                k.call("pre_fwd", (xc.shape[0], n, c), h, xc, out)
            else:
                out = torch.bmm(h.unsqueeze(1), xc).squeeze(1)
        ctx.save_for_backward(h, xs)
        ctx.meta = (x.shape, x.dtype, h_pre.dtype)
        return out.view(*x.shape[:-2], c).to(x.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:  # type: ignore[override]
        h, xs = ctx.saved_tensors
        shape, x_dtype, h_dtype = ctx.meta
        need_h, need_x = ctx.needs_input_grad
        with _no_autocast(h):
            g, xc = _rows(grad, shape[-1]).to(h.dtype), xs.to(h.dtype)
            k = kernels_for(h, xc, g)
            if k is not None:
                dh = h.new_empty(h.shape) if need_h else None
                dx = xc.new_empty(xc.shape) if need_x else None
                k.call("pre_bwd", tuple(xc.shape), h, xc, g, dh, dx)
            else:
                dh = torch.bmm(xc, g.unsqueeze(-1)).squeeze(-1) if need_h else None
                dx = h.unsqueeze(-1) * g.unsqueeze(1) if need_x else None
        return (dh.view(*shape[:-1]).to(h_dtype) if need_h else None,
                dx.view(shape).to(x_dtype) if need_x else None)


class _StreamPostRes(torch.autograd.Function):
    """``h_res @ x + h_post^T y`` per token: the C kernel, else a batched matmul plus a multiply-add."""

    @staticmethod
    def forward(ctx, h_res: torch.Tensor, x: torch.Tensor, h_post: torch.Tensor,  # type: ignore[override]
                y: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[-2:]
        dtype = compute_dtype(x.dtype)
        with _no_autocast(x):
            hr, hp = _rows(h_res, n, n).to(dtype), _rows(h_post, n).to(dtype)
            xs, ys = _rows(x, n, c), _rows(y, c)
            xc, yc = xs.to(dtype), ys.to(dtype)
            k = kernels_for(hr, hp, xc, yc)
            if k is not None:
                out = torch.empty_like(xc)
                k.call("post_res_fwd", tuple(xc.shape), hr, xc, hp, yc, out)
            else:
                out = torch.baddbmm(hp.unsqueeze(-1) * yc.unsqueeze(1), hr, xc)
        ctx.save_for_backward(hr, hp, xs, ys)
        ctx.meta = (x.shape, y.shape, x.dtype, y.dtype, h_res.dtype, h_post.dtype)
        return out.view(x.shape).to(x.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        hr, hp, xs, ys = ctx.saved_tensors
        x_shape, y_shape, x_dtype, y_dtype, hr_dtype, hp_dtype = ctx.meta
        need = ctx.needs_input_grad
        dtype = hr.dtype
        with _no_autocast(hr):
            g, xc, yc = _rows(grad, *x_shape[-2:]).to(dtype), xs.to(dtype), ys.to(dtype)
            k = kernels_for(hr, hp, xc, yc, g)
            if k is not None:
                d_hr = torch.empty_like(hr) if need[0] else None
                d_x = torch.empty_like(xc) if need[1] else None
                d_hp = torch.empty_like(hp) if need[2] else None
                d_y = torch.empty_like(yc) if need[3] else None
                k.call("post_res_bwd", tuple(xc.shape), hr, xc, hp, yc, g, d_hr, d_x, d_hp, d_y)
            else:
                d_hr = torch.bmm(g, xc.transpose(1, 2)) if need[0] else None
                d_x = torch.bmm(hr.transpose(1, 2), g) if need[1] else None
                d_hp = torch.bmm(g, yc.unsqueeze(-1)).squeeze(-1) if need[2] else None
                d_y = torch.bmm(hp.unsqueeze(1), g).squeeze(1) if need[3] else None
        n = x_shape[-2]
        return (d_hr.view(*x_shape[:-1], n).to(hr_dtype) if need[0] else None,
                d_x.view(x_shape).to(x_dtype) if need[1] else None,
                d_hp.view(*x_shape[:-1]).to(hp_dtype) if need[2] else None,
                d_y.view(y_shape).to(y_dtype) if need[3] else None)


def stream_pre(h_pre: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``ops.stream_pre`` on the fast path: ``[..., n] x [..., n, C] -> [..., C]`` (x's dtype)."""
    return _StreamPre.apply(h_pre, x)


def stream_post_res(
    h_res: torch.Tensor, x: torch.Tensor, h_post: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """``ops.stream_post_res`` on the fast path: ``h_res @ x + h_post^T y`` (x's dtype)."""
    return _StreamPostRes.apply(h_res, x, h_post, y)


__all__ = ["hc_maps", "mhc_maps", "mhc_maps_partial", "rms_norm_matmul", "sinkhorn_knopp",
           "stream_post_res", "stream_pre"]
