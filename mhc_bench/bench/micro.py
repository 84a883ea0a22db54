"""Per-op microbenchmarks of the three fusable ops at the model's shapes, eager paths side by side.

The torch reference, the fast path (fused C kernels on CPU) and on CUDA the
Triton kernels, forward and forward+backward, with achieved GB/s over the
minimum bytes each op's forward must move and the fraction of the measured
copy bandwidth (the floor a bandwidth-bound op can reach). The whole-model
compiled path has no per-op form; it is timed in the training-step table.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mhc_bench.bench.measure import interleaved_medians, median
from mhc_bench.dispatch import stream_ops_for
from mhc_bench.variants.mhc import MHCMaps


def _op_inputs(
    op: str, tokens: int, n: int, C: int, dtype: torch.dtype, device: torch.device  # noqa: N803
) -> tuple[tuple[torch.Tensor, ...], dict, int]:
    """Random inputs of one op, its keyword args, and the minimum bytes its forward moves."""
    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, dtype=dtype, device=device, requires_grad=True)

    if op == "maps":
        w = 2 * n + n * n
        # Model-like scales (unit-scale projection, alpha 0.01): random-scale logits of +-100 would
        # time denormal arithmetic in Sinkhorn instead of the op.
        phi = (torch.randn(n * C, w, device=device) / (n * C) ** 0.5).to(dtype).requires_grad_(True)
        alpha = torch.full((3,), 0.01, dtype=dtype, device=device, requires_grad=True)
        args = (r(tokens, n * C), phi, alpha, r(n), r(n), r(n, n))
        nbytes = tokens * (n * C + w) * args[0].element_size()
        return args, {"iters": 20}, nbytes
    if op == "pre":
        args = (r(tokens, n), r(tokens, n, C))
        return args, {}, tokens * (n * C + n + C) * args[0].element_size()
    args = (r(tokens, n, n), r(tokens, n, C), r(tokens, n), r(tokens, C))
    return args, {}, tokens * (2 * n * C + C + n * n + n) * args[0].element_size()


def _fn(path: str, op: str) -> Callable:
    """``maps`` is mHC's fused maps op (the kernel this microbenchmark exists for); the stream ops
    are every n-stream variant's."""
    if op == "maps":
        return MHCMaps.FULL[path]
    ops = stream_ops_for(path)
    return {"pre": ops.stream_pre, "post_res": ops.stream_post_res}[op]


def micro_rows(
    paths: list[str], tokens: int, ns: list[int], widths: list[int], device: torch.device,
    repeats: int, warmup: int, bw: float | None, dtype: torch.dtype = torch.float32,
) -> list[dict]:
    """One row per (op, n, d_model, path) for the eager ``paths``; ``bw`` is the copy bandwidth (GB/s)."""
    rows = []
    for C in widths:
        for n in ns:
            for op in ("maps", "pre", "post_res"):
                args, kw, nbytes = _op_inputs(op, tokens, n, C, dtype, device)
                runners = {}
                for path in paths:
                    fn = _fn(path, op)

                    def fwd(fn=fn, args=args, kw=kw) -> None:
                        with torch.no_grad():
                            fn(*args, **kw)

                    def fwd_bwd(fn=fn, args=args, kw=kw) -> None:
                        out = fn(*args, **kw)
                        out = out if isinstance(out, tuple) else (out,)
                        torch.autograd.backward(out, [torch.ones_like(o) for o in out])

                    runners[f"{path}/fwd"] = fwd
                    runners[f"{path}/fwd_bwd"] = fwd_bwd
                times = interleaved_medians(runners, repeats, warmup, device)
                for path in paths:
                    fwd_ms = median(times[f"{path}/fwd"])
                    gbps = nbytes / (fwd_ms / 1e3) / 1e9
                    rows.append({
                        "op": op, "n": n, "d_model": C, "tokens": tokens, "path": path,
                        "fwd_ms": fwd_ms, "fwd_bwd_ms": median(times[f"{path}/fwd_bwd"]),
                        "fwd_bytes": nbytes, "fwd_gbps": gbps,
                        "fraction_of_copy_bw": gbps / bw if bw else None,
                    })
    return rows
