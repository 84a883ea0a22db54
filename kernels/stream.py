"""Fused stream kernels: ``H_pre x`` and ``H_res x + H_post^T y``.

Both are bandwidth-bound, so each kernel reads every input element once:

- pre: reads ``n*C`` and writes ``C`` per token (backward: reads ``C + n*C``,
  writes ``n*C`` plus the ``n`` map gradients, one fused pass).
- post+res: reads ``n*C + C`` and writes ``n*C`` per token, the paper's
  ``(n+1)C`` reads instead of ``(3n+1)C`` for the unfused version (backward:
  reads ``n*C`` grad + ``n*C`` x + ``C`` y, writes ``dx``, ``dy``, ``dH_res``
  and ``dH_post`` in one pass).

The grid is 2D, token blocks x channel blocks (as Liger-Kernel's mHC kernels
do), each program one ``[BT, NP, BC]`` tile with no loop (``configs.py``
picks the sizes). The map gradients are sums over channels, so the backward
kernels write one fp32 partial per channel block (``[blocks, tokens, ...]``)
and a torch sum finishes them. n that is not a power of two is padded to
``NP`` and masked.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import configs
from ._launch import Launch, Target, check_device, target_for, tile_start


@triton.jit
def _pre_fwd(h_ptr, x_ptr, out_ptr, T, C,
             N: tl.constexpr, NP: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr):
    pid = tl.program_id(0)
    row0 = tile_start(pid, BT, 1)
    lr = tl.arange(0, BT)
    rmask = (pid * BT + lr) < T
    ni = tl.arange(0, NP)
    nmask = ni < N
    cs = tl.program_id(1) * BC + tl.arange(0, BC)
    cmask = cs < C
    h = tl.load(h_ptr + row0 * N + lr[:, None] * N + ni[None, :],
                mask=rmask[:, None] & nmask[None, :], other=0.0).to(tl.float32)
    off3 = row0 * (N * C) + lr[:, None, None] * (N * C) + ni[None, :, None] * C + cs[None, None, :]
    m3 = rmask[:, None, None] & nmask[None, :, None] & cmask[None, None, :]
    x = tl.load(x_ptr + off3, mask=m3, other=0.0)
    out = tl.sum(h[:, :, None] * x.to(tl.float32), axis=1)
    tl.store(out_ptr + row0 * C + lr[:, None] * C + cs[None, :], out.to(out_ptr.dtype.element_ty),
             mask=rmask[:, None] & cmask[None, :])


@triton.jit
def _pre_bwd(h_ptr, x_ptr, g_ptr, dh_ptr, dx_ptr, T, C,
             N: tl.constexpr, NP: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr):
    pid = tl.program_id(0)
    pid_c = tl.program_id(1)
    row0 = tile_start(pid, BT, 1)
    lr = tl.arange(0, BT)
    rmask = (pid * BT + lr) < T
    ni = tl.arange(0, NP)
    nmask = ni < N
    cs = pid_c * BC + tl.arange(0, BC)
    cmask = cs < C
    mn = rmask[:, None] & nmask[None, :]
    m3 = rmask[:, None, None] & nmask[None, :, None] & cmask[None, None, :]
    off3 = row0 * (N * C) + lr[:, None, None] * (N * C) + ni[None, :, None] * C + cs[None, None, :]
    h = tl.load(h_ptr + row0 * N + lr[:, None] * N + ni[None, :], mask=mn, other=0.0).to(tl.float32)
    g = tl.load(g_ptr + row0 * C + lr[:, None] * C + cs[None, :],
                mask=rmask[:, None] & cmask[None, :], other=0.0).to(tl.float32)
    x = tl.load(x_ptr + off3, mask=m3, other=0.0).to(tl.float32)
    tl.store(dx_ptr + off3, (h[:, :, None] * g[:, None, :]).to(dx_ptr.dtype.element_ty), mask=m3)
    part = tile_start(pid_c, T, 1) + row0  # dh partials are [channel blocks, T, N]
    tl.store(dh_ptr + part * N + lr[:, None] * N + ni[None, :], tl.sum(x * g[:, None, :], axis=2), mask=mn)


@triton.jit
def _post_res_fwd(hres_ptr, x_ptr, hpost_ptr, y_ptr, out_ptr, T, C,
                  N: tl.constexpr, NP: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr):
    pid = tl.program_id(0)
    row0 = tile_start(pid, BT, 1)
    lr = tl.arange(0, BT)
    rmask = (pid * BT + lr) < T
    ni = tl.arange(0, NP)
    nmask = ni < N
    cs = tl.program_id(1) * BC + tl.arange(0, BC)
    cmask = cs < C
    m2 = rmask[:, None] & cmask[None, :]
    mn = rmask[:, None] & nmask[None, :]
    y = tl.load(y_ptr + row0 * C + lr[:, None] * C + cs[None, :], mask=m2, other=0.0).to(tl.float32)
    hpost = tl.load(hpost_ptr + row0 * N + lr[:, None] * N + ni[None, :], mask=mn, other=0.0).to(tl.float32)
    acc = hpost[:, :, None] * y[:, None, :]
    x_base = x_ptr + row0 * (N * C)
    h_base = hres_ptr + row0 * (N * N)
    for j in tl.static_range(N):
        xj = tl.load(x_base + lr[:, None] * (N * C) + j * C + cs[None, :], mask=m2, other=0.0).to(tl.float32)
        hcol = tl.load(h_base + lr[:, None] * (N * N) + ni[None, :] * N + j, mask=mn, other=0.0)
        acc += hcol.to(tl.float32)[:, :, None] * xj[:, None, :]
    off3 = row0 * (N * C) + lr[:, None, None] * (N * C) + ni[None, :, None] * C + cs[None, None, :]
    tl.store(out_ptr + off3, acc.to(out_ptr.dtype.element_ty),
             mask=rmask[:, None, None] & nmask[None, :, None] & cmask[None, None, :])


@triton.jit
def _post_res_bwd(hres_ptr, x_ptr, hpost_ptr, y_ptr, g_ptr, dhres_ptr, dx_ptr, dhpost_ptr, dy_ptr, T, C,
                  N: tl.constexpr, NP: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr):
    pid = tl.program_id(0)
    pid_c = tl.program_id(1)
    row0 = tile_start(pid, BT, 1)
    lr = tl.arange(0, BT)
    rmask = (pid * BT + lr) < T
    ni = tl.arange(0, NP)
    nmask = ni < N
    cs = pid_c * BC + tl.arange(0, BC)
    cmask = cs < C
    m2 = rmask[:, None] & cmask[None, :]
    mn = rmask[:, None] & nmask[None, :]
    m3 = rmask[:, None, None] & nmask[None, :, None] & cmask[None, None, :]
    off3 = row0 * (N * C) + lr[:, None, None] * (N * C) + ni[None, :, None] * C + cs[None, None, :]
    g = tl.load(g_ptr + off3, mask=m3, other=0.0).to(tl.float32)
    y_off = row0 * C + lr[:, None] * C + cs[None, :]
    y = tl.load(y_ptr + y_off, mask=m2, other=0.0).to(tl.float32)
    hpost = tl.load(hpost_ptr + row0 * N + lr[:, None] * N + ni[None, :], mask=mn, other=0.0).to(tl.float32)
    tl.store(dy_ptr + y_off, tl.sum(hpost[:, :, None] * g, axis=1).to(dy_ptr.dtype.element_ty), mask=m2)
    part = tile_start(pid_c, T, 1) + row0  # map-gradient partials are [channel blocks, T, ...]
    d_hpost = tl.sum(g * y[:, None, :], axis=2)
    tl.store(dhpost_ptr + part * N + lr[:, None] * N + ni[None, :], d_hpost, mask=mn)
    x_base = row0 * (N * C) + lr[:, None] * (N * C) + cs[None, :]
    for j in tl.static_range(N):
        xj = tl.load(x_ptr + x_base + j * C, mask=m2, other=0.0).to(tl.float32)
        hcol = tl.load(hres_ptr + row0 * (N * N) + lr[:, None] * (N * N) + ni[None, :] * N + j,
                       mask=mn, other=0.0).to(tl.float32)
        tl.store(dx_ptr + x_base + j * C, tl.sum(hcol[:, :, None] * g, axis=1).to(dx_ptr.dtype.element_ty),
                 mask=m2)
        col = tl.sum(g * xj[:, None, :], axis=2)  # dH_res[:, :, j] over this channel block
        tl.store(dhres_ptr + part * (N * N) + lr[:, None] * (N * N) + ni[None, :] * N + j, col, mask=mn)


def _grid(T: int, C: int, n: int, target: Target) -> tuple[configs.Tiles, tuple[int, int]]:
    tiles = configs.stream_tiles(n, C, target.arch)
    return tiles, (max(1, configs.cdiv(T, tiles.blocks["BT"])), configs.cdiv(C, tiles.blocks["BC"]))


def channel_blocks(C: int, n: int, target: Target) -> int:
    """How many partial map gradients the backward kernels write (one per channel block)."""
    return configs.cdiv(C, configs.stream_tiles(n, C, target.arch).blocks["BC"])


def _launch(name: str, fn, args: tuple, T: int, C: int, n: int, target: Target) -> Launch:
    tiles, grid = _grid(T, C, n, target)
    return Launch(name, fn, grid, (*args, T, C), {"N": n, **tiles.blocks}, tiles.num_warps, tiles.num_stages)


def pre_fwd_launch(h, x, out, T: int, C: int, n: int, target: Target) -> Launch:
    return _launch("pre_fwd", _pre_fwd, (h, x, out), T, C, n, target)


def pre_bwd_launch(h, x, g, dh_part, dx, T: int, C: int, n: int, target: Target) -> Launch:
    return _launch("pre_bwd", _pre_bwd, (h, x, g, dh_part, dx), T, C, n, target)


def post_res_fwd_launch(h_res, x, h_post, y, out, T: int, C: int, n: int, target: Target) -> Launch:
    return _launch("post_res_fwd", _post_res_fwd, (h_res, x, h_post, y, out), T, C, n, target)


def post_res_bwd_launch(h_res, x, h_post, y, g, dhres_part, dx, dhpost_part, dy, T: int, C: int,
                        n: int, target: Target) -> Launch:
    return _launch("post_res_bwd", _post_res_bwd, (h_res, x, h_post, y, g, dhres_part, dx, dhpost_part, dy),
                   T, C, n, target)


def _finish(part: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Sum the per-channel-block partials of a map gradient."""
    return (part[0] if part.shape[0] == 1 else part.sum(0)).to(dtype)


class StreamPreFn(torch.autograd.Function):
    """``out[t] = sum_i h[t, i] x[t, i]`` on flattened ``[tokens, n(, C)]`` tensors."""

    @staticmethod
    def forward(ctx, h, x):
        check_device(x)
        n, C = x.shape[-2:]
        lead = x.shape[:-2]
        h2, x3 = h.reshape(-1, n).contiguous(), x.reshape(-1, n, C).contiguous()
        T = x3.shape[0]
        out = torch.empty((T, C), dtype=x.dtype, device=x.device)  # the stream's dtype (ops' policy)
        if T > 0:
            pre_fwd_launch(h2, x3, out, T, C, n, target_for(x3))()
        ctx.save_for_backward(h2, x3)
        ctx.lead = lead
        return out.view(*lead, C)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        h2, x3 = ctx.saved_tensors
        T, n, C = x3.shape
        target = target_for(x3)
        g2 = g.reshape(T, C).contiguous()
        dh_part = torch.empty((channel_blocks(C, n, target), T, n), dtype=torch.float32, device=x3.device)
        dx = torch.empty_like(x3)
        if T > 0:
            pre_bwd_launch(h2, x3, g2, dh_part, dx, T, C, n, target)()
        return _finish(dh_part, h2.dtype).view(*ctx.lead, n), dx.view(*ctx.lead, n, C)


class StreamPostResFn(torch.autograd.Function):
    """``out[t] = h_res[t] @ x[t] + h_post[t]^T y[t]`` on flattened tokens."""

    @staticmethod
    def forward(ctx, h_res, x, h_post, y):
        check_device(x)
        n, C = x.shape[-2:]
        lead = x.shape[:-2]
        hr, x3 = h_res.reshape(-1, n, n).contiguous(), x.reshape(-1, n, C).contiguous()
        hp, y2 = h_post.reshape(-1, n).contiguous(), y.reshape(-1, C).contiguous()
        T = x3.shape[0]
        out = torch.empty((T, n, C), dtype=x.dtype, device=x.device)  # the stream's dtype (ops' policy)
        if T > 0:
            post_res_fwd_launch(hr, x3, hp, y2, out, T, C, n, target_for(x3))()
        ctx.save_for_backward(hr, x3, hp, y2)
        ctx.lead = lead
        return out.view(*lead, n, C)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        hr, x3, hp, y2 = ctx.saved_tensors
        T, n, C = x3.shape
        target = target_for(x3)
        g3 = g.reshape(T, n, C).contiguous()
        blocks = channel_blocks(C, n, target)
        f32 = {"dtype": torch.float32, "device": x3.device}
        dhr_part, dhp_part = torch.empty((blocks, T, n, n), **f32), torch.empty((blocks, T, n), **f32)
        dx, dy = torch.empty_like(x3), torch.empty_like(y2)
        if T > 0:
            post_res_bwd_launch(hr, x3, hp, y2, g3, dhr_part, dx, dhp_part, dy, T, C, n, target)()
        lead = ctx.lead
        return (_finish(dhr_part, hr.dtype).view(*lead, n, n), dx.view(*lead, n, C),
                _finish(dhp_part, hp.dtype).view(*lead, n), dy.view(*lead, C))


def _common_lead(*pairs: tuple[torch.Tensor, int]) -> tuple[int, ...]:
    return tuple(torch.broadcast_shapes(*(t.shape[: t.dim() - k] for t, k in pairs)))


def stream_pre(h_pre: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Fused ``mhc_bench.ops.stream_pre``: ``[..., n] x [..., n, C] -> [..., C]``."""
    lead = _common_lead((h_pre, 1), (x, 2))
    n, C = x.shape[-2:]
    return StreamPreFn.apply(h_pre.expand(*lead, n), x.expand(*lead, n, C))


def stream_post_res(
    h_res: torch.Tensor, x: torch.Tensor, h_post: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """Fused ``mhc_bench.ops.stream_post_res``: ``h_res @ x + h_post^T y`` -> ``[..., n, C]``."""
    lead = _common_lead((h_res, 2), (x, 2), (h_post, 1), (y, 1))
    n, C = x.shape[-2:]
    return StreamPostResFn.apply(
        h_res.expand(*lead, n, n), x.expand(*lead, n, C), h_post.expand(*lead, n), y.expand(*lead, C)
    )
