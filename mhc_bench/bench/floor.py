"""The memory-traffic floor of the extra n-stream ops, from the shapes and the measured copy bandwidth.

The n-stream ops are bandwidth-bound (MHC_NOTES.md, Sec. 4): what they must
cost at least is the bytes they must move divided by the machine's copy
bandwidth. Per residual layer and token, a fully fused implementation that
keeps each token's ``n x C`` values in cache between its loads must move
(elements; the branch F's own traffic is the baseline's too and not counted):

- forward: read x once for the maps and ``H_pre x`` (nC), write the layer
  input (C); read x and y for ``H_res x + H_post^T y`` (nC + C), write x_next
  (nC): ``3nC + 2C``;
- backward: read dL/dx_next (nC), x (nC), y (C) and dL/d(layer input) (C),
  write dL/dx (nC) and dL/dy (C): ``3nC + 3C``;

minus what the baseline's ``x + F(x)`` moves already (forward read 2C, write
C; backward the gradient sum, read 2C, write C): ``(6n - 1) C`` extra
elements per token and layer.

That floor leaves out arithmetic, and at n = 4 the arithmetic is the larger
bound: the maps' projection is a matmul of ``K x W`` per token (each variant
gives its own: mHC the flattened ``nC`` onto ``W = n^2 + 2n``, HC each stream's ``C`` onto
``n + 2``), ``2 K W`` FLOPs forward and twice that backward (``dx`` and
``dW``); the stream mixes ``H_pre x`` and ``H_res x + H_post^T y`` cost
``2 C (n^2 + 2n)`` forward and twice that backward. At mHC n = 4, C = 512
that is ~8 FLOPs per byte of the memory floor, above this kind of CPU's
balance point (peak GEMM FLOP/s over copy bytes/s: ~4 on the 2-core CI machine). The compute floor
is those FLOPs at the machine's measured peak GEMM rate (a square matmul, the
best case for the maps' thin one); the roofline floor is the larger of the two
floors, what a perfectly fused implementation could reach.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from mhc_bench import variants
from mhc_bench.bench.measure import interleaved_medians, median


def extra_elements(n: int, d_model: int) -> int:
    """Elements the n-stream ops move per token and residual layer beyond the baseline's residual."""
    return 0 if n <= 1 else (6 * n - 1) * d_model


def extra_bytes_per_step(n: int, d_model: int, tokens: int, residual_layers: int, elem_bytes: int = 4) -> int:
    """Bytes per training step (forward + backward) the extra stream ops must move at least."""
    return extra_elements(n, d_model) * tokens * residual_layers * elem_bytes


def extra_flops(variant: str, n: int, d_model: int, knobs: Any = None) -> int:
    """FLOPs of the extra ops per token and residual layer, forward + backward, from the variant's own
    model (:meth:`mhc_bench.variants.Variant.extra_flops`; its default knobs unless given). Sinkhorn's
    ~n^2 iterations per token and the gates' elementwise math are left out: below 1 % at n >= 2."""
    spec = variants.get(variant)
    return spec.extra_flops(variants.parse_mixing(knobs if knobs is not None else variant), n, d_model)


def matmul_gflops(device: torch.device, size: int = 1024, dtype: torch.dtype = torch.float32) -> float:
    """Peak GEMM throughput: a square ``size``-cubed matmul, the best case of any matmul's rate."""
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    out = torch.empty_like(a)
    return _giga_per_second(lambda: torch.mm(a, b, out=out), 2 * size**3, device)


def copy_bandwidth_gbps(device: torch.device, mib: int = 256) -> float:
    """Copy bandwidth (read + write bytes per second) of a buffer far larger than the caches."""
    src = torch.empty(mib * 2**20 // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    return _giga_per_second(lambda: dst.copy_(src), 2 * src.numel() * 4, device)


def _giga_per_second(fn: Callable[[], object], work: float, device: torch.device) -> float:
    """``work`` units (bytes, FLOPs) over the median time of ``fn`` (3 warm-up calls, 10 timed), in 1e9/s."""
    times = interleaved_medians({"fn": fn}, 10, 3, device)["fn"]
    return work / (median(times) / 1e3) / 1e9


def add_floor(rows: list[dict], bandwidth_gbps: float, tokens: int, residual_layers: int,
              gemm_gflops: float | None = None) -> None:
    """Per row: ``floor_ms`` of the extra ops (memory), the ``floor_ratio`` it predicts, measured/floor;
    with ``gemm_gflops`` also ``compute_floor_ms`` and the roofline (``roofline_ms``, the larger of
    the two), its ``roofline_ratio`` and ``extra_over_roofline``."""
    for r in rows:
        nbytes = extra_bytes_per_step(r["n"], r["d_model"], tokens, residual_layers)
        floor_ms = nbytes / (bandwidth_gbps * 1e9) * 1e3
        base_ms = r.get("baseline_step_time_ms")
        r["floor_bytes"] = nbytes
        r["floor_ms"] = floor_ms
        r["floor_ratio"] = (base_ms + floor_ms) / base_ms if base_ms else None
        extra = r["step_time_ms"] - base_ms if base_ms else None
        r["extra_ms"] = extra
        r["extra_over_floor"] = extra / floor_ms if (extra is not None and floor_ms > 0) else None
        if gemm_gflops is None:
            continue
        flops = extra_flops(r["variant"], r["n"], r["d_model"]) * tokens * residual_layers
        compute_ms = flops / (gemm_gflops * 1e9) * 1e3
        roofline_ms = max(floor_ms, compute_ms)
        r["compute_floor_flops"] = flops
        r["compute_floor_ms"] = compute_ms
        r["roofline_ms"] = roofline_ms
        r["roofline_ratio"] = (base_ms + roofline_ms) / base_ms if base_ms else None
        r["extra_over_roofline"] = extra / roofline_ms if (extra is not None and roofline_ms > 0) else None
