"""Fused stream kernels: ``H_pre x`` and ``H_res x + H_post^T y``.

Both are bandwidth-bound, so each kernel reads every input element once:

- pre: reads ``n*C`` and writes ``C`` per token (backward: reads ``C + n*C``,
  writes ``n*C`` plus the ``n`` map gradients, one fused pass).
- post+res: reads ``n*C + C`` and writes ``n*C`` per token, the paper's
  ``(n+1)C`` reads instead of ``(3n+1)C`` for the unfused version (backward:
  reads ``n*C`` grad + ``n*C`` x + ``C`` y, writes ``dx``, ``dy``, ``dH_res``
  and ``dH_post`` in one pass).

Tiles are ``[BT tokens, N streams, BC channels]`` with a loop over channel
blocks; maps are tiny (``n + n^2`` per token) and are re-read per block.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._launch import check_device, col_block, grid_for, interpreting, token_block


@triton.jit
def _pre_fwd(h_ptr, x_ptr, out_ptr, T, C, N: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr):
    rows = tl.program_id(0) * BT + tl.arange(0, BT)
    rmask = rows < T
    ni = tl.arange(0, N)
    h = tl.load(h_ptr + rows[:, None] * N + ni[None, :], mask=rmask[:, None], other=0.0).to(tl.float32)
    for c0 in range(0, C, BC):
        cs = c0 + tl.arange(0, BC)
        m2 = rmask[:, None] & (cs < C)[None, :]
        m3 = rmask[:, None, None] & (cs < C)[None, None, :]
        x = tl.load(x_ptr + rows[:, None, None] * (N * C) + ni[None, :, None] * C + cs[None, None, :],
                    mask=m3, other=0.0).to(tl.float32)
        out = tl.sum(h[:, :, None] * x, axis=1)
        tl.store(out_ptr + rows[:, None] * C + cs[None, :], out.to(out_ptr.dtype.element_ty), mask=m2)


@triton.jit
def _pre_bwd(h_ptr, x_ptr, g_ptr, dh_ptr, dx_ptr, T, C,
             N: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr):
    rows = tl.program_id(0) * BT + tl.arange(0, BT)
    rmask = rows < T
    ni = tl.arange(0, N)
    h2 = rows[:, None] * N + ni[None, :]
    h = tl.load(h_ptr + h2, mask=rmask[:, None], other=0.0).to(tl.float32)
    dh = tl.zeros((BT, N), dtype=tl.float32)
    for c0 in range(0, C, BC):
        cs = c0 + tl.arange(0, BC)
        m2 = rmask[:, None] & (cs < C)[None, :]
        m3 = rmask[:, None, None] & (cs < C)[None, None, :]
        off3 = rows[:, None, None] * (N * C) + ni[None, :, None] * C + cs[None, None, :]
        g = tl.load(g_ptr + rows[:, None] * C + cs[None, :], mask=m2, other=0.0).to(tl.float32)
        x = tl.load(x_ptr + off3, mask=m3, other=0.0).to(tl.float32)
        dh += tl.sum(x * g[:, None, :], axis=2)
        tl.store(dx_ptr + off3, (h[:, :, None] * g[:, None, :]).to(dx_ptr.dtype.element_ty), mask=m3)
    tl.store(dh_ptr + h2, dh.to(dh_ptr.dtype.element_ty), mask=rmask[:, None])


@triton.jit
def _post_res_fwd(hres_ptr, x_ptr, hpost_ptr, y_ptr, out_ptr, T, C,
                  N: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr):
    rows = tl.program_id(0) * BT + tl.arange(0, BT)
    rmask = rows < T
    ni = tl.arange(0, N)
    hpost = tl.load(hpost_ptr + rows[:, None] * N + ni[None, :], mask=rmask[:, None], other=0.0)
    hpost = hpost.to(tl.float32)
    for c0 in range(0, C, BC):
        cs = c0 + tl.arange(0, BC)
        cmask = cs < C
        m2 = rmask[:, None] & cmask[None, :]
        y = tl.load(y_ptr + rows[:, None] * C + cs[None, :], mask=m2, other=0.0).to(tl.float32)
        acc = hpost[:, :, None] * y[:, None, :]
        for j in tl.static_range(N):
            xj = tl.load(x_ptr + rows[:, None] * (N * C) + j * C + cs[None, :], mask=m2, other=0.0)
            hcol = tl.load(hres_ptr + rows[:, None] * (N * N) + ni[None, :] * N + j,
                           mask=rmask[:, None], other=0.0).to(tl.float32)
            acc += hcol[:, :, None] * xj.to(tl.float32)[:, None, :]
        off3 = rows[:, None, None] * (N * C) + ni[None, :, None] * C + cs[None, None, :]
        m3 = rmask[:, None, None] & cmask[None, None, :]
        tl.store(out_ptr + off3, acc.to(out_ptr.dtype.element_ty), mask=m3)


@triton.jit
def _post_res_bwd(hres_ptr, x_ptr, hpost_ptr, y_ptr, g_ptr,
                  dhres_ptr, dx_ptr, dhpost_ptr, dy_ptr, T, C,
                  N: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr):
    rows = tl.program_id(0) * BT + tl.arange(0, BT)
    rmask = rows < T
    ni = tl.arange(0, N)
    p2 = rows[:, None] * N + ni[None, :]
    hpost = tl.load(hpost_ptr + p2, mask=rmask[:, None], other=0.0).to(tl.float32)
    d_hres = tl.zeros((BT, N, N), dtype=tl.float32)
    d_hpost = tl.zeros((BT, N), dtype=tl.float32)
    for c0 in range(0, C, BC):
        cs = c0 + tl.arange(0, BC)
        cmask = cs < C
        m2 = rmask[:, None] & cmask[None, :]
        m3 = rmask[:, None, None] & cmask[None, None, :]
        g = tl.load(g_ptr + rows[:, None, None] * (N * C) + ni[None, :, None] * C + cs[None, None, :],
                    mask=m3, other=0.0).to(tl.float32)
        y = tl.load(y_ptr + rows[:, None] * C + cs[None, :], mask=m2, other=0.0).to(tl.float32)
        d_hpost += tl.sum(g * y[:, None, :], axis=2)
        tl.store(dy_ptr + rows[:, None] * C + cs[None, :],
                 tl.sum(hpost[:, :, None] * g, axis=1).to(dy_ptr.dtype.element_ty), mask=m2)
        for j in tl.static_range(N):
            xj_off = rows[:, None] * (N * C) + j * C + cs[None, :]
            xj = tl.load(x_ptr + xj_off, mask=m2, other=0.0).to(tl.float32)
            hcol = tl.load(hres_ptr + rows[:, None] * (N * N) + ni[None, :] * N + j,
                           mask=rmask[:, None], other=0.0).to(tl.float32)
            dxj = tl.sum(hcol[:, :, None] * g, axis=1)
            tl.store(dx_ptr + xj_off, dxj.to(dx_ptr.dtype.element_ty), mask=m2)
            col = tl.sum(g * xj[:, None, :], axis=2)  # dH_res[:, :, j]
            d_hres += tl.where(ni[None, None, :] == j, col[:, :, None], 0.0)
    tl.store(dhpost_ptr + p2, d_hpost.to(dhpost_ptr.dtype.element_ty), mask=rmask[:, None])
    cell = ni[:, None] * N + ni[None, :]
    tl.store(dhres_ptr + rows[:, None, None] * (N * N) + cell[None, :, :],
             d_hres.to(dhres_ptr.dtype.element_ty), mask=rmask[:, None, None])


def _blocks(tokens: int, n: int, C: int) -> tuple[int, int]:
    interp = interpreting()
    bt = token_block(n * C, interp)
    if interp:
        bt = min(bt, triton.next_power_of_2(max(tokens, 1)))
    return bt, col_block(C, bt * n, interp)


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
        bt, bc = _blocks(T, n, C)
        _pre_fwd[grid_for(T, bt)](h2, x3, out, T, C, N=n, BT=bt, BC=bc)
        ctx.save_for_backward(h2, x3)
        ctx.lead = lead
        return out.view(*lead, C)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        h2, x3 = ctx.saved_tensors
        T, n, C = x3.shape
        g2 = g.reshape(T, C).contiguous()
        dh, dx = torch.empty_like(h2), torch.empty_like(x3)
        bt, bc = _blocks(T, n, C)
        _pre_bwd[grid_for(T, bt)](h2, x3, g2, dh, dx, T, C, N=n, BT=bt, BC=bc)
        return dh.view(*ctx.lead, n), dx.view(*ctx.lead, n, C)


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
        bt, bc = _blocks(T, n, C)
        _post_res_fwd[grid_for(T, bt)](hr, x3, hp, y2, out, T, C, N=n, BT=bt, BC=bc)
        ctx.save_for_backward(hr, x3, hp, y2)
        ctx.lead = lead
        return out.view(*lead, n, C)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        hr, x3, hp, y2 = ctx.saved_tensors
        T, n, C = x3.shape
        g3 = g.reshape(T, n, C).contiguous()
        d_hr, dx, d_hp, dy = (torch.empty_like(t) for t in (hr, x3, hp, y2))
        bt, bc = _blocks(T, n, C)
        _post_res_bwd[grid_for(T, bt)](hr, x3, hp, y2, g3, d_hr, dx, d_hp, dy, T, C, N=n, BT=bt, BC=bc)
        lead = ctx.lead
        return d_hr.view(*lead, n, n), dx.view(*lead, n, C), d_hp.view(*lead, n), dy.view(*lead, C)


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
