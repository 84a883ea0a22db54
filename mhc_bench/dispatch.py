"""Choose the implementation of the n-stream ops: reference, CPU fast path, Triton, whole-model compile.

- ``"torch"``: ``mhc_bench.ops``, the readable reference (ground truth).
- ``"fast"``: ``mhc_bench.fastops``, the exact CPU fast path (fused C kernels
  with torch fallbacks; also runs, unfused, on other devices).
- ``"triton"``: the fused Triton kernels (on CPU only under ``TRITON_INTERPRET=1``
  set before triton loads).
- ``"auto"`` (default) picks per call: Triton for CUDA tensors when
  triton is installed, the fast path otherwise (nothing but ``"triton"`` needs triton).
- ``"compile"``: the whole model's training forward (and so its backward) runs
  through ``torch.compile`` (``mhc_bench.compiled``), with the fast path's ops
  inside on CPU (opaque custom ops) and the reference on CUDA (inductor
  generates Triton for it); eval and probes run the same ops eagerly.
"""

from __future__ import annotations

import functools
import importlib.util
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
def triton_available() -> bool:
    """Whether triton is installed (it ships Linux wheels only; the other paths never need it)."""
    return importlib.util.find_spec("triton") is not None


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


def resolve(kernels: str, x: torch.Tensor) -> StreamOps:
    """The concrete ops a per-call choice (``auto``, ``compile``) uses for tensors like ``x``."""
    if kernels == "auto":
        return _triton_ops() if x.is_cuda and triton_available() else FAST_OPS
    if kernels == "compile":  # inductor generates Triton from the reference on CUDA
        return TORCH_OPS if x.is_cuda else FAST_OPS
    return stream_ops_for(kernels)


def _per_call(name: str) -> StreamOps:
    """Ops that pick their implementation per call with :func:`resolve`."""
    return StreamOps(
        name,
        lambda x_flat, *args, **kw: resolve(name, x_flat).mhc_maps(x_flat, *args, **kw),
        lambda h_pre, x: resolve(name, x).stream_pre(h_pre, x),
        lambda h_res, x, h_post, y: resolve(name, x).stream_post_res(h_res, x, h_post, y),
        lambda x_flat, *args, **kw: resolve(name, x_flat).mhc_maps_partial(x_flat, *args, **kw),
        fastops.hc_maps,  # torch ops only: exact and fine on every device
    )


def stream_ops_for(kernels: str) -> StreamOps:
    """The ops for one ``kernels`` choice; ``"triton"`` fails early where it cannot run."""
    if kernels == "torch":
        return TORCH_OPS
    if kernels == "fast":
        return FAST_OPS
    if kernels in ("auto", "compile"):
        return _per_call(kernels)
    if kernels == "triton":
        return _require_triton_device()
    raise ValueError(f"kernels must be one of {KERNEL_CHOICES}, got {kernels!r}")
