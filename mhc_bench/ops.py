"""Torch reference implementations of the n-stream operations.

These are the ground truth the fused kernels (``mhc_kernels``) are tested
against, and the fast path on CPU. Shapes follow one convention everywhere:
the residual state is ``x: [..., n, C]``, ``h_res: [..., n, n]`` with rows
indexing *output* streams, ``h_pre`` and ``h_post: [..., n]``; one residual
layer computes ``x_next = h_res @ x + h_post^T F(h_pre @ x)``.

Precision policy (every path follows it: this reference, the CPU fast path,
``torch.compile`` and the Triton kernels; mHC paper Eq. 17-19 keep the maps in
fp32):

- the maps ``h_pre, h_post, h_res`` are computed and returned in fp32 (fp64
  for fp64 inputs, for gradient checks), whatever the activation dtype or
  autocast says;
- ``stream_pre`` and ``stream_post_res`` accumulate in fp32 with autocast off
  and return the *stream's* dtype: under ``bf16-mixed`` the fp32 residual
  carry stays fp32 at every layer, exactly like the baseline's ``x + F(x)``
  (only F itself runs in bf16); with a bf16 stream (``bf16-true``) the result
  is rounded once per layer, after an fp32 accumulation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MAP_NAMES = ("pre", "post", "res")


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the stream ops and maps compute in: fp32, or fp64 for fp64 inputs."""
    return torch.promote_types(dtype, torch.float32)


def _no_autocast(device: torch.device) -> torch.autocast:
    return torch.autocast(device_type=device.type, enabled=False)


def sinkhorn_knopp(logits: torch.Tensor, iters: int) -> torch.Tensor:
    """Project ``[..., n, n]`` logits onto (approximately) doubly stochastic matrices.

    Log-domain Sinkhorn-Knopp (mHC Eq. 12): start from ``exp(logits)``, then
    ``iters`` rounds of column normalisation followed by row normalisation, so
    the result ends on rows (row sums are 1 up to rounding, column sums
    converge with ``iters``). Accumulates in float32 at least, returns the
    input dtype. Differentiable by autograd through every iteration.
    """
    if iters < 1:
        raise ValueError(f"sinkhorn iters must be >= 1, got {iters}")
    out_dtype = logits.dtype
    z = logits.to(torch.promote_types(logits.dtype, torch.float32))
    for _ in range(iters):
        z = z - torch.logsumexp(z, dim=-2, keepdim=True)  # columns sum to 1
        z = z - torch.logsumexp(z, dim=-1, keepdim=True)  # rows sum to 1
    return z.exp().to(out_dtype)


def static_maps(
    lead: tuple[int, ...], n: int, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Identity-like values of disabled maps: H_pre = 1/n, H_post = 1, H_res = I."""
    h_pre = torch.full((*lead, n), 1.0 / n, dtype=dtype, device=device)
    h_post = torch.ones((*lead, n), dtype=dtype, device=device)
    h_res = torch.eye(n, dtype=dtype, device=device).expand(*lead, n, n)
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
    """mHC Eq. 10-11 for all three maps: ``x_flat [..., n*C] -> (h_pre, h_post, h_res)``.

    ``phi`` is ``[n*C, 2n + n*n]`` laid out ``[phi_pre | phi_post | phi_res]`` so
    one matmul produces all projections; ``alpha`` holds the three gates
    ``(alpha_pre, alpha_post, alpha_res)``; ``b_res`` is ``[n, n]`` (rows =
    output streams). This is the signature the fused kernel implements.
    """
    gates = {"pre": alpha[0], "post": alpha[1], "res": alpha[2]}
    return mhc_maps_partial(x_flat, phi, gates, b_pre, b_post, b_res, b_pre.shape[-1], iters, eps)


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
    """mHC maps with any subset enabled; a map whose bias is ``None`` is disabled.

    ``phi``'s columns hold the enabled maps' projections in the order pre,
    post, res. Disabled maps take their static identity-like values
    (H_pre = 1/n, H_post = 1, H_res = I), so Table 1's ablation rows are this
    function with some biases left out. RMSNorm runs over the whole flattened
    ``n*C`` vector with no scale of its own (``phi`` absorbs it).
    """
    dtype = compute_dtype(x_flat.dtype)
    lead = x_flat.shape[:-1]
    with _no_autocast(x_flat.device):
        xn = F.rms_norm(x_flat.to(dtype), (x_flat.shape[-1],), eps=eps)
        proj = xn @ phi.to(dtype)
        offset = 0

        def take(width: int) -> torch.Tensor:
            nonlocal offset
            chunk = proj[..., offset : offset + width]
            offset += width
            return chunk

        h_pre, h_post, h_res = static_maps(lead, n, dtype, proj.device)
        if b_pre is not None:
            h_pre = torch.sigmoid(alpha["pre"] * take(n) + b_pre)
        if b_post is not None:
            h_post = 2.0 * torch.sigmoid(alpha["post"] * take(n) + b_post)
        if b_res is not None:
            h_res = sinkhorn_knopp(alpha["res"] * take(n * n).unflatten(-1, (n, n)) + b_res, iters)
    return h_pre, h_post, h_res


def stream_pre(h_pre: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Read the layer input from the streams: ``[..., n] x [..., n, C] -> [..., C]`` (x's dtype)."""
    dtype = compute_dtype(x.dtype)
    with _no_autocast(x.device):
        return torch.einsum("...n,...nc->...c", h_pre.to(dtype), x.to(dtype)).to(x.dtype)


def stream_post_res(
    h_res: torch.Tensor, x: torch.Tensor, h_post: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """Mix the streams and write the layer output back: ``h_res @ x + h_post^T y`` (x's dtype)."""
    dtype = compute_dtype(x.dtype)
    with _no_autocast(x.device):
        mixed = torch.matmul(h_res.to(dtype), x.to(dtype))
        return (mixed + h_post.to(dtype).unsqueeze(-1) * y.to(dtype).unsqueeze(-2)).to(x.dtype)
