"""Fused mHC maps (Eq. 10-12): RMSNorm, projection, gates, sigmoids and Sinkhorn.

What is fused where:

- forward, one kernel, one pass over x: ``x @ [phi_pre|phi_post|phi_res]``
  (``tl.dot`` over a block of tokens) and the sum of squares are accumulated
  together, so RMSNorm is applied afterwards as a per-row scale
  (``RMSNorm(x) @ phi = rstd * (x @ phi)``); then alpha/bias, sigmoid,
  2*sigmoid and the Sinkhorn iterations on the n x n block in registers. It
  saves the ``[tokens, 2n+n^2]`` projection and ``rstd`` (fp32) for backward.
- backward, one kernel: sigmoid and exact Sinkhorn backward (replay, see
  ``sinkhorn.py``) to the logit gradients, then ``dx`` through the projection
  and RMSNorm in one pass over x (the RMSNorm reduction ``<dxn, xn>`` equals
  ``<d proj, proj>``, so no extra pass is needed).
- in torch (small or matmul-shaped): ``dphi = x^T (rstd * d proj)`` as one
  matmul, and the token sums giving ``dalpha`` and the bias gradients from the
  ``[tokens, 2n+n^2]`` logit gradients the kernel writes.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._launch import check_device, col_block, grid_for, interpreting, token_block
from .sinkhorn import sinkhorn_bwd, sinkhorn_fwd


@triton.jit
def _logits(proj_ptr, alpha_ptr, bpre_ptr, bpost_ptr, bres_ptr, rows, rmask, W, N: tl.constexpr):
    """Gate and bias the saved projection: returns (l_pre [BT,N], l_post [BT,N], l_res [BT,N,N])."""
    ni = tl.arange(0, N)
    row2 = rows[:, None] * W
    m2 = rmask[:, None]
    a_pre = tl.load(alpha_ptr)
    a_post = tl.load(alpha_ptr + 1)
    a_res = tl.load(alpha_ptr + 2)
    p_pre = tl.load(proj_ptr + row2 + ni[None, :], mask=m2, other=0.0)
    p_post = tl.load(proj_ptr + row2 + N + ni[None, :], mask=m2, other=0.0)
    cell = ni[:, None] * N + ni[None, :]
    p_res = tl.load(proj_ptr + rows[:, None, None] * W + 2 * N + cell[None, :, :],
                    mask=rmask[:, None, None], other=0.0)
    l_pre = a_pre * p_pre + tl.load(bpre_ptr + ni)[None, :]
    l_post = a_post * p_post + tl.load(bpost_ptr + ni)[None, :]
    l_res = a_res * p_res + tl.load(bres_ptr + cell)[None, :, :]
    return l_pre, l_post, l_res


@triton.jit
def _maps_fwd(x_ptr, phi_ptr, alpha_ptr, bpre_ptr, bpost_ptr, bres_ptr,
              proj_ptr, rstd_ptr, hpre_ptr, hpost_ptr, hres_ptr,
              T, K, W, iters, eps,
              N: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, WP: tl.constexpr):
    pid = tl.program_id(0)
    rows = pid * BT + tl.arange(0, BT)
    rmask = rows < T
    wc = tl.arange(0, WP)
    wmask = wc < W
    acc = tl.zeros((BT, WP), dtype=tl.float32)
    ss = tl.zeros((BT,), dtype=tl.float32)
    for k0 in range(0, K, BK):
        ks = k0 + tl.arange(0, BK)
        kmask = ks < K
        xb = tl.load(x_ptr + rows[:, None] * K + ks[None, :],
                     mask=rmask[:, None] & kmask[None, :], other=0.0).to(tl.float32)
        pb = tl.load(phi_ptr + ks[:, None] * W + wc[None, :], mask=kmask[:, None] & wmask[None, :], other=0.0)
        acc = tl.dot(xb, pb, acc, input_precision="ieee")
        ss += tl.sum(xb * xb, axis=1)
    rstd = 1.0 / tl.sqrt(ss / K + eps)
    proj = acc * rstd[:, None]
    tl.store(proj_ptr + rows[:, None] * W + wc[None, :], proj, mask=rmask[:, None] & wmask[None, :])
    tl.store(rstd_ptr + rows, rstd, mask=rmask)
    tl.debug_barrier()  # the per-map tiles below re-read proj in another layout

    l_pre, l_post, l_res = _logits(proj_ptr, alpha_ptr, bpre_ptr, bpost_ptr, bres_ptr, rows, rmask, W, N)
    ni = tl.arange(0, N)
    out2 = rows[:, None] * N + ni[None, :]
    m2 = rmask[:, None]
    tl.store(hpre_ptr + out2, tl.sigmoid(l_pre).to(hpre_ptr.dtype.element_ty), mask=m2)
    tl.store(hpost_ptr + out2, (2.0 * tl.sigmoid(l_post)).to(hpost_ptr.dtype.element_ty), mask=m2)
    h_res = tl.exp(sinkhorn_fwd(l_res, iters))
    cell = ni[:, None] * N + ni[None, :]
    tl.store(hres_ptr + rows[:, None, None] * (N * N) + cell[None, :, :],
             h_res.to(hres_ptr.dtype.element_ty), mask=rmask[:, None, None])


@triton.jit
def _maps_bwd(x_ptr, phi_ptr, alpha_ptr, bpre_ptr, bpost_ptr, bres_ptr, proj_ptr, rstd_ptr,
              gpre_ptr, gpost_ptr, gres_ptr, gl_ptr, dx_ptr,
              T, K, W, iters,
              N: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, WP: tl.constexpr):
    pid = tl.program_id(0)
    rows = pid * BT + tl.arange(0, BT)
    rmask = rows < T
    ni = tl.arange(0, N)
    m2 = rmask[:, None]
    m3 = rmask[:, None, None]
    l_pre, l_post, l_res = _logits(proj_ptr, alpha_ptr, bpre_ptr, bpost_ptr, bres_ptr, rows, rmask, W, N)
    in2 = rows[:, None] * N + ni[None, :]
    cell = ni[:, None] * N + ni[None, :]
    in3 = rows[:, None, None] * (N * N) + cell[None, :, :]
    g_pre = tl.load(gpre_ptr + in2, mask=m2, other=0.0).to(tl.float32)
    g_post = tl.load(gpost_ptr + in2, mask=m2, other=0.0).to(tl.float32)
    g_res = tl.load(gres_ptr + in3, mask=m3, other=0.0).to(tl.float32)
    s_pre = tl.sigmoid(l_pre)
    s_post = tl.sigmoid(l_post)
    gl_pre = g_pre * s_pre * (1.0 - s_pre)
    gl_post = 2.0 * g_post * s_post * (1.0 - s_post)
    gl_res = sinkhorn_bwd(l_res, g_res, iters)
    gl_row = gl_ptr + rows[:, None] * W
    tl.store(gl_row + ni[None, :], gl_pre, mask=m2)
    tl.store(gl_row + N + ni[None, :], gl_post, mask=m2)
    tl.store(gl_ptr + rows[:, None, None] * W + 2 * N + cell[None, :, :], gl_res, mask=m3)
    tl.debug_barrier()  # re-read the logit gradients as one [BT, W] tile

    wc = tl.arange(0, WP)
    wmask = wc < W
    tile = rows[:, None] * W + wc[None, :]
    tmask = rmask[:, None] & wmask[None, :]
    a_vec = tl.where(wc < N, tl.load(alpha_ptr),
                     tl.where(wc < 2 * N, tl.load(alpha_ptr + 1), tl.load(alpha_ptr + 2)))
    gp = tl.load(gl_ptr + tile, mask=tmask, other=0.0) * a_vec[None, :]  # dL/d proj
    proj = tl.load(proj_ptr + tile, mask=tmask, other=0.0)
    rstd = tl.load(rstd_ptr + rows, mask=rmask, other=0.0)
    corr = tl.sum(gp * proj, axis=1) * rstd / K  # <dxn, xn> / K, scaled for raw x
    for k0 in range(0, K, BK):
        ks = k0 + tl.arange(0, BK)
        kmask = ks < K
        xm = rmask[:, None] & kmask[None, :]
        phi_t = tl.load(phi_ptr + ks[None, :] * W + wc[:, None],
                        mask=wmask[:, None] & kmask[None, :], other=0.0)
        dxn = tl.dot(gp, phi_t, input_precision="ieee")
        xb = tl.load(x_ptr + rows[:, None] * K + ks[None, :], mask=xm, other=0.0).to(tl.float32)
        dx = rstd[:, None] * (dxn - xb * corr[:, None])
        tl.store(dx_ptr + rows[:, None] * K + ks[None, :], dx.to(dx_ptr.dtype.element_ty), mask=xm)


def _blocks(tokens: int, K: int, W: int) -> tuple[int, int, int]:
    interp = interpreting()
    bt = token_block(K, interp)
    if interp:
        bt = max(16, min(bt, triton.next_power_of_2(tokens)))
    bk = max(16, col_block(K, bt, interp))
    wp = max(16, triton.next_power_of_2(W))
    return bt, bk, wp


class MHCMapsFn(torch.autograd.Function):
    """Autograd wrapper of the fused maps kernels on ``[tokens, n*C]`` rows."""

    @staticmethod
    def forward(ctx, x_flat, phi, alpha, b_pre, b_post, b_res, iters: int, eps: float):
        check_device(x_flat)
        n = b_pre.shape[-1]
        lead, K = x_flat.shape[:-1], x_flat.shape[-1]
        x2 = x_flat.reshape(-1, K).contiguous()
        T, W = x2.shape[0], phi.shape[-1]
        if W != 2 * n + n * n:
            raise ValueError(f"phi must have 2n+n^2 = {2 * n + n * n} columns, got {W}")
        f32 = {"dtype": torch.float32, "device": x2.device}
        phi32 = phi.to(**f32).contiguous()
        alpha32 = alpha.to(**f32).contiguous()
        bias = [b.to(**f32).contiguous() for b in (b_pre, b_post, b_res)]
        proj = torch.empty((T, W), **f32)
        rstd = torch.empty((T,), **f32)
        h_pre = torch.empty((T, n), **f32)  # the maps are fp32 whatever x is (mhc_bench.ops' policy)
        h_post = torch.empty_like(h_pre)
        h_res = torch.empty((T, n, n), **f32)
        bt, bk, wp = _blocks(T, K, W)
        _maps_fwd[grid_for(T, bt)](x2, phi32, alpha32, *bias, proj, rstd, h_pre, h_post, h_res,
                                   T, K, W, int(iters), float(eps), N=n, BT=bt, BK=bk, WP=wp)
        ctx.save_for_backward(x2, phi32, alpha32, *bias, proj, rstd)
        ctx.meta = (lead, int(iters), phi.dtype, alpha.dtype, [b.dtype for b in (b_pre, b_post, b_res)])
        return h_pre.view(*lead, n), h_post.view(*lead, n), h_res.view(*lead, n, n)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_pre, g_post, g_res):
        x2, phi32, alpha32, bpre, bpost, bres, proj, rstd = ctx.saved_tensors
        lead, iters, phi_dtype, alpha_dtype, bias_dtypes = ctx.meta
        T, K = x2.shape
        W, n = proj.shape[1], bpre.shape[0]
        grads = [torch.zeros((T, *shape), dtype=torch.float32, device=x2.device) if g is None
                 else g.reshape(T, *shape).contiguous() for g, shape in
                 ((g_pre, (n,)), (g_post, (n,)), (g_res, (n, n)))]
        gl = torch.empty((T, W), dtype=torch.float32, device=x2.device)
        dx = torch.empty_like(x2)
        bt, bk, wp = _blocks(T, K, W)
        _maps_bwd[grid_for(T, bt)](x2, phi32, alpha32, bpre, bpost, bres, proj, rstd, *grads, gl, dx,
                                   T, K, W, iters, N=n, BT=bt, BK=bk, WP=wp)
        groups = (slice(0, n), slice(n, 2 * n), slice(2 * n, W))
        d_alpha = torch.stack([(gl[:, s] * proj[:, s]).sum() for s in groups])
        d_bias = [gl[:, s].sum(0) for s in groups]
        widths = torch.tensor([n, n, n * n], device=x2.device)
        a_vec = torch.repeat_interleave(alpha32, widths)
        d_phi = x2.to(torch.float32).t() @ (gl * a_vec * rstd[:, None])
        return (dx.view(*lead, K), d_phi.to(phi_dtype), d_alpha.to(alpha_dtype),
                d_bias[0].to(bias_dtypes[0]), d_bias[1].to(bias_dtypes[1]),
                d_bias[2].view(n, n).to(bias_dtypes[2]), None, None)


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
    """Fused ``mhc_bench.ops.mhc_maps``: ``x_flat [..., n*C] -> (h_pre, h_post, h_res)``, fp32."""
    if iters < 1:
        raise ValueError(f"sinkhorn iters must be >= 1, got {iters}")
    return MHCMapsFn.apply(x_flat, phi, alpha, b_pre, b_post, b_res, iters, eps)
