"""The fused stream ops and Sinkhorn-Knopp, differentiable, for eager and compiled code.

One implementation per op (C kernel or torch fallback), reached two ways:
eager calls go through ``torch.autograd.Function`` (cheapest dispatch), and
code being compiled by ``torch.compile`` calls the same functions registered
as custom ops, which inductor runs as opaque kernels (no graph break, no
attempt to re-derive them), each with its backward op (``register_autograd``).
The maps' projection (:func:`norm_matmul`, :func:`norm_matmul_dw`) is the
exception: plain functions that the caller's autograd Function wraps, whose
compiled form is torch ops that inductor fuses with the norm.

Each op takes contiguous token-major tensors of one compute dtype (what
``mhc_bench.fastops`` hands over) and runs the C kernel for fp32/fp64 on
CPU, else the torch-op version of the same math below (other devices, other
dtypes, no C compiler, ``MHC_BENCH_CPU_KERNELS=0``).

Shapes: ``z, h_res: [T, n, n]`` (rows = output streams), ``x: [T, n, C]``,
``y: [T, C]``, ``h_pre, h_post: [T, n]``.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable
from torch.library import custom_op

from mhc_bench.cpukernels.build import kernels_for

# -- torch-op versions of the kernels ---------------------------------------------------------------


def _sinkhorn_iterates(
    z: torch.Tensor, iters: int, trace: list[tuple[torch.Tensor, torch.Tensor]] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(H, M0)`` for logits laid out ``[n_out, n_in, T]`` (long contiguous rows for every op).

    ``M0 = exp(z - max over each column)``: column normalisation removes any
    per-column factor, so the shift changes no iterate after the first half
    step (the reference's first logsumexp does the same) and ``exp`` cannot
    overflow. With ``trace`` each half-step's ``(output, divisor)`` is kept.
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
    return t.permute(1, 2, 0).contiguous()


def _torch_sinkhorn(z: torch.Tensor, iters: int) -> torch.Tensor:
    return _sinkhorn_iterates(_tokens_last(z), iters)[0].permute(2, 0, 1).contiguous()


def _torch_sinkhorn_backward(z: torch.Tensor, g: torch.Tensor, iters: int) -> torch.Tensor:
    trace: list[tuple[torch.Tensor, torch.Tensor]] = []
    _, m0 = _sinkhorn_iterates(_tokens_last(z), iters, trace)
    gt = _tokens_last(g)
    # B = A / sum(A, dim): dA = (dB - sum(dB * B, dim)) / sum(A, dim)
    for step in reversed(range(len(trace))):
        out, s = trace[step]
        gt = (gt - (gt * out).sum(dim=step % 2, keepdim=True)).div_(s)
    return gt.mul_(m0).permute(2, 0, 1).contiguous()


# -- kernel or fallback, as plain functions ---------------------------------------------------------


# The exp-domain iterations are exact while every token's logits span at most this much: entries
# then stay >= e^-60 / n^2 through the iterations, far from fp32's underflow (~e^-87). Beyond it an
# entry can underflow to 0 while its row is rescaled by 1 / (a sum ~1e-35): the forward stays
# finite but the backward overflows to NaN (mHC trained at lr 0.1-0.3 without clipping did, where
# the log-domain reference trained on). Such calls run the log-domain iterations instead: the C
# kernel, or the reference where there is none.
EXP_DOMAIN_MAX_RANGE = 30.0


def _log_domain(z: torch.Tensor, iters: int) -> torch.Tensor:
    k = kernels_for(z)
    if k is None:
        from mhc_bench.ops import sinkhorn_knopp

        return sinkhorn_knopp(z, iters)
    z = z.contiguous()
    h = torch.empty_like(z)
    k.call("sinkhorn_log_fwd", (z.shape[0], z.shape[-1], iters), z, h, work=z.numel() * iters)
    return h


def _log_domain_backward(z: torch.Tensor, g: torch.Tensor, iters: int) -> torch.Tensor:
    """The reference's gradient: the C kernel's closed-form replay, or autograd through the
    reference's iterations."""
    k = kernels_for(z, g)
    if k is None:
        from mhc_bench.ops import sinkhorn_knopp

        with torch.enable_grad():
            leaf = z.detach().requires_grad_(True)
            (dz,) = torch.autograd.grad(sinkhorn_knopp(leaf, iters), leaf, g)
        return dz
    z, g = z.contiguous(), g.contiguous()
    dz = torch.empty_like(z)
    k.call("sinkhorn_log_bwd", (z.shape[0], z.shape[-1], iters), z, g, dz, work=z.numel() * iters)
    return dz


def _start(z: torch.Tensor) -> torch.Tensor | None:
    """``M0 = exp(z - shift)`` of ``[T, n, n]`` logits (torch's vectorised exp), or ``None`` where
    some token's logits span more than ``EXP_DOMAIN_MAX_RANGE`` (the log domain must run).

    Any per-token factor is removed exactly by the first column normalisation. One shift for all
    tokens (the global max) while all logits lie within the range; else each token's own max, so
    a token far below the others cannot underflow. One pass of per-token max/min decides both.
    """
    if not z.numel():
        return z.clone()
    tok_max, tok_min = z.amax(dim=(-2, -1)), z.amin(dim=(-2, -1))
    if float((tok_max - tok_min).max()) > EXP_DOMAIN_MAX_RANGE:
        return None
    top = tok_max.max()
    if float(top - tok_min.min()) <= EXP_DOMAIN_MAX_RANGE:
        return (z - top).exp_()
    return (z - tok_max[:, None, None]).exp_()


def sinkhorn_impl(z: torch.Tensor, iters: int) -> torch.Tensor:
    """Exp-domain Sinkhorn-Knopp of ``[T, n, n]`` logits: ``iters`` x (columns, then rows)."""
    m0 = _start(z)  # the range check guards the torch-op fallback's exp domain too
    if m0 is None:
        return _log_domain(z, iters)
    k = kernels_for(z)
    if k is None:
        return _torch_sinkhorn(z, iters)
    h = torch.empty_like(z)
    k.call("sinkhorn_fwd", (z.shape[0], z.shape[-1], iters), m0, h, work=z.numel() * iters)
    return h


def sinkhorn_backward_impl(z: torch.Tensor, g: torch.Tensor, iters: int) -> torch.Tensor:
    """``dL/dz`` from ``dL/dH``: replays the iterates, then differentiates each normalisation."""
    m0 = _start(z)
    if m0 is None:
        return _log_domain_backward(z, g, iters)
    k = kernels_for(z, g)
    if k is None:
        return _torch_sinkhorn_backward(z, g, iters)
    dz = torch.empty_like(z)
    k.call("sinkhorn_bwd", (z.shape[0], z.shape[-1], iters), m0, g, dz, work=z.numel() * iters)
    return dz


def stream_pre_impl(h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``out[t] = sum_j h[t, j] x[t, j]``."""
    k = kernels_for(h, x)
    if k is None:
        return torch.bmm(h.unsqueeze(1), x).squeeze(1)
    out = x.new_empty(x.shape[0], x.shape[2])
    k.call("pre_fwd", tuple(x.shape), h, x, out)
    return out


def stream_pre_backward_impl(
    h: torch.Tensor, x: torch.Tensor, g: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(dh, dx)``: ``dh[t, j] = <x[t, j], g[t]>``, ``dx[t, j] = h[t, j] g[t]``."""
    k = kernels_for(h, x, g)
    if k is None:
        return torch.bmm(x, g.unsqueeze(-1)).squeeze(-1), h.unsqueeze(-1) * g.unsqueeze(1)
    dh, dx = torch.empty_like(h), torch.empty_like(x)
    k.call("pre_bwd", tuple(x.shape), h, x, g, dh, dx)
    return dh, dx


def stream_pre_dh_impl(h: torch.Tensor, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``dh`` of ``H_pre x`` alone (its ``dx`` share is added by :func:`maps_dx_epilogue_impl`)."""
    k = kernels_for(h, x, g)
    if k is None:
        return torch.bmm(x, g.unsqueeze(-1)).squeeze(-1)
    dh = torch.empty_like(h)
    k.call("pre_bwd", tuple(x.shape), h, x, g, dh, None)
    return dh


def maps_dx_epilogue_impl(dx: torch.Tensor, x: torch.Tensor, coef: torch.Tensor, h: torch.Tensor,
                          g: torch.Tensor, extra: torch.Tensor | None = None) -> None:
    """In place on ``dx [T, n, C]``: ``dx += coef[..., None] * x + h[..., None] * g[:, None]``,
    then ``dx += extra`` (another op's dx share, added last: autograd's sum, bit for bit)."""
    k = kernels_for(dx, x, coef, h, g, *(() if extra is None else (extra,)))
    if k is None:
        dx.addcmul_(x, coef.unsqueeze(-1)).addcmul_(h.unsqueeze(-1), g.unsqueeze(1))
        if extra is not None:
            dx.add_(extra)
        return
    k.call("maps_dx_epilogue", tuple(x.shape), dx, x, coef, h, g, extra)


def _torch_norm_matmul(x: torch.Tensor, w: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    # (w^T x^T)^T: the orientation the fast path used before the C tiles, kept so compiled code
    # traces (and computes) exactly what it did; MKL's best orientation for thin w varies by host.
    rstd = torch.linalg.vector_norm(x, dim=-1, keepdim=True).square_().div_(x.shape[-1]).add_(eps).rsqrt_()
    return torch.mm(w.t(), x.t()).t().mul_(rstd), rstd


def norm_matmul(x: torch.Tensor, w: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rms_norm(x) @ w, rstd)`` of ``x [R, K]`` and ``w [K, J]``, not differentiable (the
    caller's autograd Function, ``fastops.rms_norm_matmul``, owns the backward).

    ``rstd [R, 1] = 1 / sqrt(mean(x^2) + eps)`` comes from the projection's pass over x. Code
    being compiled gets torch ops instead: inductor fuses the norm with its neighbours, and as an
    opaque op the C tiles measured no faster inside a compiled step.
    """
    k = None if torch.compiler.is_compiling() else kernels_for(x, w)
    if k is None:
        return _torch_norm_matmul(x, w, eps)
    x, w = x.contiguous(), w.contiguous()
    proj, rstd = x.new_empty(x.shape[0], w.shape[1]), x.new_empty(x.shape[0], 1)
    k.call("normmm_fwd", (x.shape[0], x.shape[1], w.shape[1], eps), x, w, proj, rstd, work=x.numel())
    return proj, rstd


def norm_matmul_dw(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``x^T g`` of ``x [R, K]`` and a thin ``g [R, J]``: the projection's weight gradient."""
    k = None if torch.compiler.is_compiling() else kernels_for(x, g)
    if k is None:
        return torch.mm(g.t(), x).t()  # 2x faster than x^T @ g for thin g
    x, g = x.contiguous(), g.contiguous()
    dw = x.new_empty(x.shape[1], g.shape[1])
    k.call("normmm_dw", (x.shape[0], x.shape[1], g.shape[1]), x, g, dw, work=x.numel())
    return dw


def stream_post_res_impl(
    h_res: torch.Tensor, x: torch.Tensor, h_post: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """``out[t, i] = sum_j h_res[t, i, j] x[t, j] + h_post[t, i] y[t]``."""
    k = kernels_for(h_res, x, h_post, y)
    if k is None:
        return torch.baddbmm(h_post.unsqueeze(-1) * y.unsqueeze(1), h_res, x)
    out = torch.empty_like(x)
    k.call("post_res_fwd", tuple(x.shape), h_res, x, h_post, y, out)
    return out


def stream_post_res_backward_impl(
    h_res: torch.Tensor, x: torch.Tensor, h_post: torch.Tensor, y: torch.Tensor, g: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(dh_res, dx, dh_post, dy)`` in one pass over ``g``, ``x`` and ``y``."""
    k = kernels_for(h_res, x, h_post, y, g)
    if k is None:
        return (torch.bmm(g, x.transpose(1, 2)), torch.bmm(h_res.transpose(1, 2), g),
                torch.bmm(g, y.unsqueeze(-1)).squeeze(-1), torch.bmm(h_post.unsqueeze(1), g).squeeze(1))
    d_hr, d_x, d_hp, d_y = (torch.empty_like(t) for t in (h_res, x, h_post, y))
    k.call("post_res_bwd", tuple(x.shape), h_res, x, h_post, y, g, d_hr, d_x, d_hp, d_y)
    return d_hr, d_x, d_hp, d_y


# -- eager: autograd Functions (a custom op costs ~25 us more per call) -----------------------------


class _Sinkhorn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: torch.Tensor, iters: int) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(z)
        ctx.iters = iters
        return sinkhorn_impl(z, iters)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (z,) = ctx.saved_tensors
        return sinkhorn_backward_impl(z, grad.contiguous(), ctx.iters), None


class _StreamPre(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(h, x)
        return stream_pre_impl(h, x)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        return stream_pre_backward_impl(*ctx.saved_tensors, grad.contiguous())


class _StreamPostRes(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h_res: torch.Tensor, x: torch.Tensor, h_post: torch.Tensor,  # type: ignore[override]
                y: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(h_res, x, h_post, y)
        return stream_post_res_impl(h_res, x, h_post, y)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        return stream_post_res_backward_impl(*ctx.saved_tensors, grad.contiguous())


# -- compiled: the same as torch custom ops (opaque to inductor, no graph break) --------------------


_sinkhorn_op = custom_op("mhc_bench::sinkhorn", sinkhorn_impl, mutates_args=())
_sinkhorn_backward_op = custom_op("mhc_bench::sinkhorn_backward", sinkhorn_backward_impl, mutates_args=())
_pre_op = custom_op("mhc_bench::stream_pre", stream_pre_impl, mutates_args=())
_pre_backward_op = custom_op("mhc_bench::stream_pre_backward", stream_pre_backward_impl, mutates_args=())
_post_res_op = custom_op("mhc_bench::stream_post_res", stream_post_res_impl, mutates_args=())
_post_res_backward_op = custom_op("mhc_bench::stream_post_res_backward", stream_post_res_backward_impl,
                                  mutates_args=())


@_sinkhorn_op.register_fake
def _(z: torch.Tensor, iters: int) -> torch.Tensor:
    return torch.empty_like(z)


@_sinkhorn_backward_op.register_fake
def _(z: torch.Tensor, g: torch.Tensor, iters: int) -> torch.Tensor:
    return torch.empty_like(z)


@_pre_op.register_fake
def _(h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return x.new_empty(x.shape[0], x.shape[2])


@_pre_backward_op.register_fake
def _(h: torch.Tensor, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.empty_like(h), torch.empty_like(x)


@_post_res_op.register_fake
def _(h_res: torch.Tensor, x: torch.Tensor, h_post: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


@_post_res_backward_op.register_fake
def _(h_res: torch.Tensor, x: torch.Tensor, h_post: torch.Tensor, y: torch.Tensor,
      g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return tuple(torch.empty_like(t) for t in (h_res, x, h_post, y))  # type: ignore[return-value]


def _save_inputs(ctx, inputs: tuple, output: torch.Tensor) -> None:
    tensors = [t for t in inputs if isinstance(t, torch.Tensor)]
    ctx.save_for_backward(*tensors)
    ctx.iters = inputs[-1] if isinstance(inputs[-1], int) else None


_sinkhorn_op.register_autograd(
    lambda ctx, g: (_sinkhorn_backward_op(*ctx.saved_tensors, g.contiguous(), ctx.iters), None),
    setup_context=_save_inputs)
_pre_op.register_autograd(lambda ctx, g: _pre_backward_op(*ctx.saved_tensors, g.contiguous()),
                          setup_context=_save_inputs)
_post_res_op.register_autograd(lambda ctx, g: _post_res_backward_op(*ctx.saved_tensors, g.contiguous()),
                               setup_context=_save_inputs)


# -- entry points ------------------------------------------------------------------------------------


def sinkhorn(z: torch.Tensor, iters: int) -> torch.Tensor:
    """Sinkhorn-Knopp of contiguous ``[T, n, n]`` logits, differentiable (one autograd node)."""
    if torch.compiler.is_compiling():
        return _sinkhorn_op(z, iters)
    return _Sinkhorn.apply(z, iters)


def stream_pre(h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``H_pre x`` of contiguous ``[T, n]`` and ``[T, n, C]``, differentiable."""
    if torch.compiler.is_compiling():
        return _pre_op(h, x)
    return _StreamPre.apply(h, x)


def stream_post_res(
    h_res: torch.Tensor, x: torch.Tensor, h_post: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """``H_res x + H_post^T y`` of contiguous token-major tensors, differentiable."""
    if torch.compiler.is_compiling():
        return _post_res_op(h_res, x, h_post, y)
    return _StreamPostRes.apply(h_res, x, h_post, y)
