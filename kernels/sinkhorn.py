"""Triton device functions for log-domain Sinkhorn-Knopp on ``[BT, NP, NP]`` register tiles.

Forward: ``iters`` rounds of column then row log-normalisation (mHC Eq. 12,
same order as ``mhc_bench.ops.sinkhorn_knopp``). Backward is exact: the
gradient of step t needs that step's iterates, so it replays the forward from
the logits up to step t (O(iters^2) small-tile ops, no scratch memory).
Using only the final output instead (treating H_res as a softmax of the
logits) gives wrong gradients whenever Sinkhorn has not fully converged.

n that is not a power of two: the tile is padded to ``NP`` (``tl.arange``
needs a power of two) and ``PAD`` is set; padded cells hold ``NEG`` after
every normalisation, so they weigh ``exp(NEG - max) = 0`` in every
logsumexp of a real row or column, and their gradients stay exactly 0.
"""

from __future__ import annotations

import triton
import triton.language as tl

NEG = tl.constexpr(-1.0e30)  # finite: an all-padded row's logsumexp stays finite (no inf - inf)


@triton.jit
def _lse(z, axis: tl.constexpr):
    m = tl.max(z, axis=axis, keep_dims=True)
    return m + tl.log(tl.sum(tl.exp(z - m), axis=axis, keep_dims=True))


@triton.jit
def _step(z, valid, PAD: tl.constexpr):
    """One round: columns (sum over rows, axis 1) then rows (axis 2). Returns (u, z_next)."""
    u = z - _lse(z, 1)
    if PAD:
        u = tl.where(valid, u, NEG)
    z_next = u - _lse(u, 2)
    if PAD:
        z_next = tl.where(valid, z_next, NEG)
    return u, z_next


@triton.jit
def sinkhorn_fwd(logits, valid, iters, PAD: tl.constexpr):
    """Log-domain iterates; returns log H (``exp`` of it is the doubly stochastic map, 0 where padded)."""
    z = logits
    if PAD:
        z = tl.where(valid, z, NEG)
    for _ in range(iters):
        _, z = _step(z, valid, PAD)
    return z


@triton.jit
def sinkhorn_bwd(logits, grad_h, valid, iters, PAD: tl.constexpr):
    """Gradient w.r.t. the logits given ``dL/dH``, replaying the iterations exactly."""
    z0 = logits
    if PAD:
        z0 = tl.where(valid, z0, NEG)
    z_last = sinkhorn_fwd(z0, valid, iters, PAD)
    g = grad_h * tl.exp(z_last)  # dL/d(log H); 0 on padded cells
    for k in range(iters):
        z = z0
        for _ in range(iters - 1 - k):
            _, z = _step(z, valid, PAD)
        u, z_next = _step(z, valid, PAD)
        # z_next = u - lse_row(u): dL/du = g - softmax_row(u) * rowsum(g), softmax_row(u) = exp(z_next)
        g = g - tl.exp(z_next) * tl.sum(g, axis=2, keep_dims=True)
        # u = z - lse_col(z): dL/dz = g - exp(u) * colsum(g)
        g = g - tl.exp(u) * tl.sum(g, axis=1, keep_dims=True)
    return g
