"""Fused mHC maps (Eq. 10-12): RMSNorm, projection, gates, sigmoids and Sinkhorn.

Four kernels, two per direction, so that the bandwidth-bound pass over ``x``
and the register-hungry Sinkhorn never share one register budget:

- ``_maps_fwd_proj`` (grid: token blocks x K splits): one pass over ``x``
  accumulating ``x @ [phi_pre|phi_post|phi_res]`` (``tl.dot``, fp32
  accumulation) and the sum of squares; RMSNorm is applied afterwards as a
  per-row scale (``RMSNorm(x) @ phi = rstd * (x @ phi)``). Each split writes
  partial sums (``[splits, tokens, 2n+n^2]``, under 1 % of the traffic on ``x``);
  splitting K lets short token counts fill the GPU (as DeepSeek's TileKernels do).
- ``_maps_fwd_sinkhorn`` (grid: token blocks): sums the partials, saves the
  projection and ``rstd`` (fp32) for backward, applies alpha/bias, sigmoid,
  2*sigmoid and the Sinkhorn iterations on ``[BE, n, n]`` register tiles.
- ``_maps_bwd_sinkhorn``: sigmoid and exact Sinkhorn backward (replay, see
  ``sinkhorn.py``) to the logit gradients, plus the RMSNorm correction
  ``<dxn, xn>`` per token (equal to ``<d proj, proj>``, so no pass over ``x``).
- ``_maps_bwd_x`` (grid: column blocks x token splits): ``dx`` and a partial
  ``dphi = x^T (rstd * d proj)`` in one pass over ``x``, the ``phi`` block
  held in registers while the program walks its tokens.

The token sums giving ``dalpha``, the bias gradients and the sum of the
``dphi`` partials are small torch reductions. The dot precision on GPU is
``MHC_KERNELS_DOT`` (see ``_launch.py``); the interpreter computes exact fp32.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import configs
from ._launch import Launch, Target, check_device, dot_precision, target_for, tile_start
from .sinkhorn import sinkhorn_bwd, sinkhorn_fwd


@triton.jit
def _maps_fwd_proj(x_ptr, phi_ptr, part_ptr, ss_ptr, T, K, W, k_per_split,
                   BT: tl.constexpr, BK: tl.constexpr, WP: tl.constexpr, DOT: tl.constexpr):
    pid = tl.program_id(0)
    split = tl.program_id(1)
    row0 = tile_start(pid, BT, 1)
    lr = tl.arange(0, BT)
    rmask = (pid * BT + lr) < T
    wc = tl.arange(0, WP)
    wmask = wc < W
    x_base = x_ptr + row0 * K
    acc = tl.zeros((BT, WP), dtype=tl.float32)
    ss = tl.zeros((BT,), dtype=tl.float32)
    k_lo = split * k_per_split
    k_hi = tl.minimum(K, k_lo + k_per_split)
    for k0 in range(k_lo, k_hi, BK):
        ks = k0 + tl.arange(0, BK)
        kmask = ks < k_hi
        xb = tl.load(x_base + lr[:, None] * K + ks[None, :],
                     mask=rmask[:, None] & kmask[None, :], other=0.0).to(tl.float32)
        pb = tl.load(phi_ptr + ks[:, None] * W + wc[None, :], mask=kmask[:, None] & wmask[None, :], other=0.0)
        acc = tl.dot(xb, pb, acc, input_precision=DOT)
        ss += tl.sum(xb * xb, axis=1)
    base = tile_start(split, T, 1) + row0  # partials are [splits, T, ...]
    tl.store(part_ptr + base * W + lr[:, None] * W + wc[None, :], acc, mask=rmask[:, None] & wmask[None, :])
    tl.store(ss_ptr + base + lr, ss, mask=rmask)


@triton.jit
def _logits(p_pre, p_post, p_res, alpha_ptr, bpre_ptr, bpost_ptr, bres_ptr, ni, nmask, cell, valid):
    """alpha * proj + b for the three maps (padded streams read 0)."""
    l_pre = tl.load(alpha_ptr) * p_pre + tl.load(bpre_ptr + ni, mask=nmask, other=0.0)[None, :]
    l_post = tl.load(alpha_ptr + 1) * p_post + tl.load(bpost_ptr + ni, mask=nmask, other=0.0)[None, :]
    l_res = tl.load(alpha_ptr + 2) * p_res + tl.load(bres_ptr + cell, mask=valid, other=0.0)[None, :, :]
    return l_pre, l_post, l_res


@triton.jit
def _maps_fwd_sinkhorn(part_ptr, ss_ptr, alpha_ptr, bpre_ptr, bpost_ptr, bres_ptr,
                       proj_ptr, rstd_ptr, hpre_ptr, hpost_ptr, hres_ptr,
                       T, K, W, n_splits, iters, eps,
                       N: tl.constexpr, NP: tl.constexpr, BE: tl.constexpr):
    pid = tl.program_id(0)
    row0 = tile_start(pid, BE, 1)
    lr = tl.arange(0, BE)
    rmask = (pid * BE + lr) < T
    ni = tl.arange(0, NP)
    nmask = ni < N
    valid = nmask[:, None] & nmask[None, :]
    m2 = rmask[:, None] & nmask[None, :]
    m3 = rmask[:, None, None] & valid[None, :, :]
    cell = ni[:, None] * N + ni[None, :]
    o2 = lr[:, None] * W + ni[None, :]
    o3 = lr[:, None, None] * W + 2 * N + cell[None, :, :]
    p_pre = tl.zeros((BE, NP), dtype=tl.float32)
    p_post = tl.zeros((BE, NP), dtype=tl.float32)
    p_res = tl.zeros((BE, NP, NP), dtype=tl.float32)
    ss = tl.zeros((BE,), dtype=tl.float32)
    for s in range(n_splits):
        base = tile_start(s, T, 1) + row0
        p_pre += tl.load(part_ptr + base * W + o2, mask=m2, other=0.0)
        p_post += tl.load(part_ptr + base * W + N + o2, mask=m2, other=0.0)
        p_res += tl.load(part_ptr + base * W + o3, mask=m3, other=0.0)
        ss += tl.load(ss_ptr + base + lr, mask=rmask, other=0.0)
    rstd = 1.0 / tl.sqrt(ss / K + eps)
    p_pre = p_pre * rstd[:, None]
    p_post = p_post * rstd[:, None]
    p_res = p_res * rstd[:, None, None]
    tl.store(rstd_ptr + row0 + lr, rstd, mask=rmask)
    tl.store(proj_ptr + row0 * W + o2, p_pre, mask=m2)
    tl.store(proj_ptr + row0 * W + N + o2, p_post, mask=m2)
    tl.store(proj_ptr + row0 * W + o3, p_res, mask=m3)

    l_pre, l_post, l_res = _logits(p_pre, p_post, p_res, alpha_ptr, bpre_ptr, bpost_ptr, bres_ptr,
                                   ni, nmask, cell, valid)
    h2 = row0 * N + lr[:, None] * N + ni[None, :]
    tl.store(hpre_ptr + h2, tl.sigmoid(l_pre).to(hpre_ptr.dtype.element_ty), mask=m2)
    tl.store(hpost_ptr + h2, (2.0 * tl.sigmoid(l_post)).to(hpost_ptr.dtype.element_ty), mask=m2)
    h_res = tl.exp(sinkhorn_fwd(l_res, valid[None, :, :], iters, NP != N))
    tl.store(hres_ptr + row0 * (N * N) + lr[:, None, None] * (N * N) + cell[None, :, :],
             h_res.to(hres_ptr.dtype.element_ty), mask=m3)


@triton.jit
def _maps_bwd_sinkhorn(proj_ptr, rstd_ptr, alpha_ptr, bpre_ptr, bpost_ptr, bres_ptr,
                       gpre_ptr, gpost_ptr, gres_ptr, gl_ptr, corr_ptr, T, K, W, iters,
                       N: tl.constexpr, NP: tl.constexpr, BE: tl.constexpr):
    pid = tl.program_id(0)
    row0 = tile_start(pid, BE, 1)
    lr = tl.arange(0, BE)
    rmask = (pid * BE + lr) < T
    ni = tl.arange(0, NP)
    nmask = ni < N
    valid = nmask[:, None] & nmask[None, :]
    m2 = rmask[:, None] & nmask[None, :]
    m3 = rmask[:, None, None] & valid[None, :, :]
    cell = ni[:, None] * N + ni[None, :]
    o2 = row0 * W + lr[:, None] * W + ni[None, :]
    o3 = row0 * W + lr[:, None, None] * W + 2 * N + cell[None, :, :]
    p_pre = tl.load(proj_ptr + o2, mask=m2, other=0.0)
    p_post = tl.load(proj_ptr + N + o2, mask=m2, other=0.0)
    p_res = tl.load(proj_ptr + o3, mask=m3, other=0.0)
    l_pre, l_post, l_res = _logits(p_pre, p_post, p_res, alpha_ptr, bpre_ptr, bpost_ptr, bres_ptr,
                                   ni, nmask, cell, valid)
    h2 = row0 * N + lr[:, None] * N + ni[None, :]
    g_pre = tl.load(gpre_ptr + h2, mask=m2, other=0.0).to(tl.float32)
    g_post = tl.load(gpost_ptr + h2, mask=m2, other=0.0).to(tl.float32)
    g_res = tl.load(gres_ptr + row0 * (N * N) + lr[:, None, None] * (N * N) + cell[None, :, :],
                    mask=m3, other=0.0).to(tl.float32)
    s_pre = tl.sigmoid(l_pre)
    s_post = tl.sigmoid(l_post)
    gl_pre = g_pre * s_pre * (1.0 - s_pre)
    gl_post = 2.0 * g_post * s_post * (1.0 - s_post)
    gl_res = sinkhorn_bwd(l_res, g_res, valid[None, :, :], iters, NP != N)
    tl.store(gl_ptr + o2, gl_pre, mask=m2)
    tl.store(gl_ptr + N + o2, gl_post, mask=m2)
    tl.store(gl_ptr + o3, gl_res, mask=m3)
    # RMSNorm backward needs <dL/d xn, xn> = <dL/d proj, proj> (proj = xn @ phi), scaled for raw x.
    dot = (tl.load(alpha_ptr) * tl.sum(gl_pre * p_pre, axis=1)
           + tl.load(alpha_ptr + 1) * tl.sum(gl_post * p_post, axis=1)
           + tl.load(alpha_ptr + 2) * tl.sum(tl.sum(gl_res * p_res, axis=2), axis=1))
    rstd = tl.load(rstd_ptr + row0 + lr, mask=rmask, other=0.0)
    tl.store(corr_ptr + row0 + lr, dot * rstd / K, mask=rmask)


@triton.jit
def _maps_bwd_x(x_ptr, phi_ptr, alpha_ptr, gl_ptr, rstd_ptr, corr_ptr, dx_ptr, dphi_ptr,
                T, K, W, t_per_split,
                N: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, WP: tl.constexpr, DOT: tl.constexpr):
    pid = tl.program_id(0)
    split = tl.program_id(1)
    ks = pid * BK + tl.arange(0, BK)
    kmask = ks < K
    wc = tl.arange(0, WP)
    wmask = wc < W
    a_vec = tl.where(wc < N, tl.load(alpha_ptr), tl.where(wc < 2 * N, tl.load(alpha_ptr + 1),
                                                          tl.load(alpha_ptr + 2)))
    phi_t = tl.load(phi_ptr + ks[None, :] * W + wc[:, None], mask=wmask[:, None] & kmask[None, :], other=0.0)
    dphi = tl.zeros((BK, WP), dtype=tl.float32)
    lr = tl.arange(0, BT)
    t_lo = split * t_per_split
    t_hi = tl.minimum(T, t_lo + t_per_split)
    for t0 in range(t_lo, t_hi, BT):
        rmask = (t0 + lr) < t_hi
        g_base = gl_ptr + tile_start(t0, 1, W)
        gp = tl.load(g_base + lr[:, None] * W + wc[None, :], mask=rmask[:, None] & wmask[None, :],
                     other=0.0) * a_vec[None, :]  # dL/d proj
        rstd = tl.load(rstd_ptr + t0 + lr, mask=rmask, other=0.0)
        corr = tl.load(corr_ptr + t0 + lr, mask=rmask, other=0.0)
        xo = tile_start(t0, 1, K) + lr[:, None] * K + ks[None, :]
        xm = rmask[:, None] & kmask[None, :]
        xb = tl.load(x_ptr + xo, mask=xm, other=0.0).to(tl.float32)
        dxn = tl.dot(gp, phi_t, input_precision=DOT)
        dx = rstd[:, None] * (dxn - xb * corr[:, None])
        tl.store(dx_ptr + xo, dx.to(dx_ptr.dtype.element_ty), mask=xm)
        dphi = tl.dot(tl.trans(xb), gp * rstd[:, None], dphi, input_precision=DOT)
    out = (tile_start(split, K, 1) + ks[:, None]) * W + wc[None, :]  # partials are [splits, K, W]
    tl.store(dphi_ptr + out, dphi, mask=kmask[:, None] & wmask[None, :])


def _dot(target: Target) -> str:
    return "ieee" if target.arch == configs.INTERPRETER else dot_precision()


def fwd_splits(T: int, K: int, n: int, target: Target) -> tuple[int, int]:
    """``(k_per_split, n_splits)`` of the projection for ``T`` tokens of width ``K``."""
    tiles = configs.maps_proj_tiles(n, target.arch)
    bt, bk = tiles.blocks["BT"], tiles.blocks["BK"]
    want = configs.splits(configs.cdiv(T, bt), K, bk, target.arch, target.sm_count)
    return configs.split_length(K, want, bk)


def bwd_splits(T: int, K: int, n: int, target: Target) -> tuple[int, int]:
    """``(t_per_split, n_splits)`` of the token loop of ``_maps_bwd_x``."""
    tiles = configs.maps_bwd_x_tiles(n, target.arch)
    bt, bk = tiles.blocks["BT"], tiles.blocks["BK"]
    want = configs.splits(configs.cdiv(K, bk), T, bt, target.arch, target.sm_count)
    return configs.split_length(T, want, bt)


def fwd_launches(x, phi, alpha, biases, part, ss, proj, rstd, maps, T: int, K: int, n: int,
                 iters: int, eps: float, target: Target) -> list[Launch]:
    """The two forward launches; tensors or ``MockTensor`` (ahead-of-time compile)."""
    W = configs.maps_width(n)
    k_per_split, n_splits = fwd_splits(T, K, n, target)
    pt = configs.maps_proj_tiles(n, target.arch)
    st = configs.maps_sinkhorn_tiles(n, target.arch)
    return [
        Launch("maps_fwd_proj", _maps_fwd_proj, (configs.cdiv(T, pt.blocks["BT"]), n_splits),
               (x, phi, part, ss, T, K, W, k_per_split), {**pt.blocks, "DOT": _dot(target)},
               pt.num_warps, pt.num_stages),
        Launch("maps_fwd_sinkhorn", _maps_fwd_sinkhorn, (configs.cdiv(T, st.blocks["BE"]),),
               (part, ss, alpha, *biases, proj, rstd, *maps, T, K, W, n_splits, iters, eps),
               {"N": n, **st.blocks}, st.num_warps, st.num_stages),
    ]


def bwd_launches(x, phi, alpha, biases, proj, rstd, grads, gl, corr, dx, dphi, T: int, K: int,
                 n: int, iters: int, target: Target) -> list[Launch]:
    """The two backward launches; tensors or ``MockTensor``."""
    W = configs.maps_width(n)
    t_per_split, _ = bwd_splits(T, K, n, target)
    xt = configs.maps_bwd_x_tiles(n, target.arch)
    st = configs.maps_sinkhorn_tiles(n, target.arch)
    return [
        Launch("maps_bwd_sinkhorn", _maps_bwd_sinkhorn, (configs.cdiv(T, st.blocks["BE"]),),
               (proj, rstd, alpha, *biases, *grads, gl, corr, T, K, W, iters),
               {"N": n, **st.blocks}, st.num_warps, st.num_stages),
        Launch("maps_bwd_x", _maps_bwd_x, (configs.cdiv(K, xt.blocks["BK"]), bwd_splits(T, K, n, target)[1]),
               (x, phi, alpha, gl, rstd, corr, dx, dphi, T, K, W, t_per_split),
               {"N": n, **xt.blocks, "DOT": _dot(target)}, xt.num_warps, xt.num_stages),
    ]


class MHCMapsFn(torch.autograd.Function):
    """Autograd wrapper of the fused maps kernels on ``[tokens, n*C]`` rows."""

    @staticmethod
    def forward(ctx, x_flat, phi, alpha, b_pre, b_post, b_res, iters: int, eps: float):
        check_device(x_flat)
        n = b_pre.shape[-1]
        lead, K = x_flat.shape[:-1], x_flat.shape[-1]
        x2 = x_flat.reshape(-1, K).contiguous()
        T, W = x2.shape[0], phi.shape[-1]
        if W != configs.maps_width(n):
            raise ValueError(f"phi must have 2n+n^2 = {configs.maps_width(n)} columns, got {W}")
        target = target_for(x2)
        f32 = {"dtype": torch.float32, "device": x2.device}
        phi32 = phi.to(**f32).contiguous()
        alpha32 = alpha.to(**f32).contiguous()
        bias = [b.to(**f32).contiguous() for b in (b_pre, b_post, b_res)]
        n_splits = fwd_splits(T, K, n, target)[1]
        part = torch.empty((n_splits, T, W), **f32)
        ss = torch.empty((n_splits, T), **f32)
        proj = torch.empty((T, W), **f32)
        rstd = torch.empty((T,), **f32)
        # The maps are fp32 whatever x is (mhc_bench.ops' precision policy).
        maps = (torch.empty((T, n), **f32), torch.empty((T, n), **f32), torch.empty((T, n, n), **f32))
        if T > 0:
            for launch in fwd_launches(x2, phi32, alpha32, bias, part, ss, proj, rstd, maps, T, K, n,
                                       int(iters), float(eps), target):
                launch()
        ctx.save_for_backward(x2, phi32, alpha32, *bias, proj, rstd)
        ctx.meta = (lead, int(iters), phi.dtype, alpha.dtype, [b.dtype for b in (b_pre, b_post, b_res)])
        h_pre, h_post, h_res = maps
        return h_pre.view(*lead, n), h_post.view(*lead, n), h_res.view(*lead, n, n)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_pre, g_post, g_res):
        x2, phi32, alpha32, bpre, bpost, bres, proj, rstd = ctx.saved_tensors
        lead, iters, phi_dtype, alpha_dtype, bias_dtypes = ctx.meta
        T, K = x2.shape
        W, n = proj.shape[1], bpre.shape[0]
        target = target_for(x2)
        f32 = {"dtype": torch.float32, "device": x2.device}
        grads = [torch.zeros((T, *shape), **f32) if g is None else g.reshape(T, *shape).contiguous()
                 for g, shape in ((g_pre, (n,)), (g_post, (n,)), (g_res, (n, n)))]
        gl = torch.empty((T, W), **f32)
        corr = torch.empty((T,), **f32)
        dx = torch.empty_like(x2)
        alloc = torch.empty if T > 0 else torch.zeros  # with tokens, the kernel writes every entry
        dphi = alloc((bwd_splits(T, K, n, target)[1], K, W), **f32)
        if T > 0:
            for launch in bwd_launches(x2, phi32, alpha32, (bpre, bpost, bres), proj, rstd, grads, gl, corr,
                                       dx, dphi, T, K, n, iters, target):
                launch()
        groups = (slice(0, n), slice(n, 2 * n), slice(2 * n, W))
        d_alpha = torch.stack([(gl[:, s] * proj[:, s]).sum() for s in groups])
        d_bias = [gl[:, s].sum(0) for s in groups]
        d_phi = dphi[0] if dphi.shape[0] == 1 else dphi.sum(0)
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
