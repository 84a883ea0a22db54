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
elements per token and layer. The maps' matmul (``2 nC (n^2 + 2n)`` FLOPs per
token) is compute, not traffic, and is not in the floor.
"""

from __future__ import annotations

import torch

from mhc_bench.bench.measure import interleaved_medians, median


def extra_elements(n: int, d_model: int) -> int:
    """Elements the n-stream ops move per token and residual layer beyond the baseline's residual."""
    return 0 if n <= 1 else (6 * n - 1) * d_model


def extra_bytes_per_step(n: int, d_model: int, tokens: int, residual_layers: int, elem_bytes: int = 4) -> int:
    """Bytes per training step (forward + backward) the extra stream ops must move at least."""
    return extra_elements(n, d_model) * tokens * residual_layers * elem_bytes


def copy_bandwidth_gbps(device: torch.device, mib: int = 256) -> float:
    """Copy bandwidth (read + write bytes per second) of a buffer far larger than the caches."""
    src = torch.empty(mib * 2**20 // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    times = interleaved_medians({"copy": lambda: dst.copy_(src)}, 10, 3, device)["copy"]
    return 2 * src.numel() * 4 / (median(times) / 1e3) / 1e9


def add_floor(rows: list[dict], bandwidth_gbps: float, tokens: int, residual_layers: int) -> None:
    """Per row: ``floor_ms`` of the extra ops, the ``floor_ratio`` it predicts, and measured/floor."""
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
