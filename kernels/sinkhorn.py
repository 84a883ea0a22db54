"""Triton device functions for log-domain Sinkhorn-Knopp on ``[BT, N, N]`` register tiles.

Forward: ``iters`` rounds of column then row log-normalisation (mHC Eq. 12,
same order as ``mhc_bench.ops.sinkhorn_knopp``). Backward is exact: the
gradient of step t needs that step's iterates, so it replays the forward from
the logits up to step t (O(iters^2) small-tile ops, no scratch memory).
Using only the final output instead (treating H_res as a softmax of the
logits) gives wrong gradients whenever Sinkhorn has not fully converged.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _lse(z, axis: tl.constexpr):
    m = tl.max(z, axis=axis, keep_dims=True)
    return m + tl.log(tl.sum(tl.exp(z - m), axis=axis, keep_dims=True))


@triton.jit
def _step(z):
    """One round: columns (sum over rows, axis 1) then rows (axis 2). Returns (u, z_next)."""
    u = z - _lse(z, 1)
    return u, u - _lse(u, 2)


@triton.jit
def sinkhorn_fwd(logits, iters):
    """Log-domain iterates; returns log H (``exp`` of it is the doubly stochastic map)."""
    z = logits
    for _ in range(iters):
        _, z = _step(z)
    return z


@triton.jit
def sinkhorn_bwd(logits, grad_h, iters):
    """Gradient w.r.t. the logits given ``dL/dH``, replaying the iterations exactly."""
    z_last = sinkhorn_fwd(logits, iters)
    g = grad_h * tl.exp(z_last)  # dL/d(log H)
    for k in range(iters):
        z = logits
        for _ in range(iters - 1 - k):
            _, z = _step(z)
        u, z_next = _step(z)
        # z_next = u - lse_row(u): dL/du = g - softmax_row(u) * rowsum(g), softmax_row(u) = exp(z_next)
        g = g - tl.exp(z_next) * tl.sum(g, axis=2, keep_dims=True)
        # u = z - lse_col(z): dL/dz = g - exp(u) * colsum(g)
        g = g - tl.exp(u) * tl.sum(g, axis=1, keep_dims=True)
    return g
