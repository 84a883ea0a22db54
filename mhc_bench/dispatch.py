"""Choose the implementation of the n-stream ops: torch reference, compiled, or Triton.

``kernels="auto"`` picks per call: the fused Triton kernels when the tensors
live on CUDA and ``mhc_kernels`` imports, the torch reference otherwise (the
fast path on CPU). ``"compile"`` wraps the torch reference in
``torch.compile`` (inductor; works on CPU with gcc). ``"triton"`` forces the
kernels (on CPU that needs ``TRITON_INTERPRET=1`` set before triton loads).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch

from mhc_bench import fastops, ops

KERNEL_CHOICES = ("auto", "torch", "fast", "triton", "compile")


@dataclass(frozen=True)
class StreamOps:
    """The three fusable operations of one residual layer (see ``mhc_bench.ops``)."""

    name: str
    mhc_maps: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    stream_pre: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    stream_post_res: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    # mHC maps with some maps disabled (Table 1 ablations); the fused kernels cover only all three.
    mhc_maps_partial: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = ops.mhc_maps_partial
    # HC's maps; None: ``model.HCMaps`` computes them itself (the reference).
    hc_maps: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None


TORCH_OPS = StreamOps("torch", ops.mhc_maps, ops.stream_pre, ops.stream_post_res)
FAST_OPS = StreamOps("fast", fastops.mhc_maps, fastops.stream_pre, fastops.stream_post_res,
                     fastops.mhc_maps_partial, fastops.hc_maps)


@functools.cache
def _compiled_ops() -> StreamOps:
    compile_fn = functools.partial(torch.compile, dynamic=True)
    return StreamOps(
        "compile",
        compile_fn(ops.mhc_maps),
        compile_fn(ops.stream_pre),
        compile_fn(ops.stream_post_res),
    )


@functools.cache
def _triton_ops() -> StreamOps:
    try:
        import mhc_kernels
    except ImportError as err:  # pragma: no cover - depends on the install
        raise RuntimeError(f"kernels='triton' needs the mhc_kernels package and triton: {err}") from err
    return StreamOps("triton", mhc_kernels.mhc_maps, mhc_kernels.stream_pre, mhc_kernels.stream_post_res)


def _require_triton_device() -> StreamOps:
    """The Triton ops, or a clear error when they cannot run here (CPU without the interpreter)."""
    found = _triton_ops()
    import mhc_kernels

    if not torch.cuda.is_available() and not mhc_kernels.interpreting():
        raise RuntimeError(
            "kernels='triton' was requested but there is no CUDA device and triton is not in "
            "interpreter mode. " + mhc_kernels.INTERPRET_HINT + "."
        )
    return found


def _auto_ops() -> StreamOps:
    """Triton for CUDA tensors, the torch reference for everything else, decided per call."""

    def pick(x: torch.Tensor) -> StreamOps:
        return _triton_ops() if x.is_cuda else TORCH_OPS

    return StreamOps(
        "auto",
        lambda x_flat, *args, **kw: pick(x_flat).mhc_maps(x_flat, *args, **kw),
        lambda h_pre, x: pick(x).stream_pre(h_pre, x),
        lambda h_res, x, h_post, y: pick(x).stream_post_res(h_res, x, h_post, y),
    )


def stream_ops_for(kernels: str) -> StreamOps:
    """The ops for one ``kernels`` choice; ``"triton"`` fails early where it cannot run."""
    if kernels == "torch":
        return TORCH_OPS
    if kernels == "fast":
        return FAST_OPS
    if kernels == "compile":
        return _compiled_ops()
    if kernels == "triton":
        return _require_triton_device()
    if kernels == "auto":
        return _auto_ops()
    raise ValueError(f"kernels must be one of {KERNEL_CHOICES}, got {kernels!r}")
