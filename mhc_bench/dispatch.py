"""Which implementation runs: the one decision, for the stream ops and every variant's maps.

``ModelConfig.kernels`` is a *choice*; an implementation is a *path*:

- ``torch``: the readable reference (``mhc_bench.ops`` and each variant's reference maps);
- ``fast``: the exact CPU fast path (``mhc_bench.fastops``: fused C kernels with torch
  fallbacks; it also runs, unfused, on other devices);
- ``triton``: the fused Triton kernels (``mhc_kernels``; on CPU only under
  ``TRITON_INTERPRET=1`` set before triton loads).

:func:`pick` maps a choice, a device and the paths an op has to the path that runs:
``auto`` prefers Triton on CUDA and the fast path elsewhere; ``compile`` (whole-model
``torch.compile``, :mod:`mhc_bench.compiled`) prefers the reference on CUDA, which inductor
turns into Triton, and the fast path's custom ops on CPU; an explicit path is taken as is.
A path an op does not have falls back along ``triton -> fast -> torch`` (every op has the
reference). ``mhc-bench variants --explain`` prints the resulting table and every cell
records the paths that ran (``metrics.json``: ``kernel_paths``).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable, Collection
from dataclasses import dataclass

import torch

from mhc_bench import fastops, ops

KERNEL_CHOICES = ("auto", "torch", "fast", "triton", "compile")
PATHS = ("torch", "fast", "triton")
_FALLBACK = {"triton": ("triton", "fast", "torch"), "fast": ("fast", "torch"), "torch": ("torch",)}


def preferred(kernels: str, device_type: str) -> str:
    """The path a choice asks for on a device type (before falling back)."""
    if kernels not in KERNEL_CHOICES:
        raise ValueError(f"kernels must be one of {KERNEL_CHOICES}, got {kernels!r}")
    if kernels == "auto":
        return "triton" if device_type == "cuda" else "fast"
    if kernels == "compile":
        return "torch" if device_type == "cuda" else "fast"
    return kernels


def triton_usable(device_type: str) -> bool:
    """Whether the Triton kernels can run for tensors on ``device_type`` in this process (triton is
    installed on Linux only: elsewhere ``auto`` falls back to the fast path; only an explicit
    ``kernels: triton`` needs it)."""
    if importlib.util.find_spec("triton") is None:
        return False
    import mhc_kernels

    return device_type == "cuda" or mhc_kernels.interpreting()


def pick(kernels: str, device_type: str, available: Collection[str]) -> str:
    """The path that runs an op with ``available`` implementations (the one decision)."""
    for path in _FALLBACK[preferred(kernels, device_type)]:
        if path in available and (path != "triton" or triton_usable(device_type)):
            return path
    return "torch"


def require_usable(kernels: str) -> None:
    """Fail at model construction when ``kernels='triton'`` cannot run here (not at the first step)."""
    if kernels != "triton":
        return
    try:
        import mhc_kernels
    except ImportError as err:  # pragma: no cover - depends on the install
        raise RuntimeError(f"kernels='triton' needs the mhc_kernels package and triton: {err}") from err
    if not torch.cuda.is_available() and not mhc_kernels.interpreting():
        raise RuntimeError(
            "kernels='triton' was requested but there is no CUDA device and triton is not in "
            "interpreter mode. " + mhc_kernels.INTERPRET_HINT + "."
        )


@dataclass(frozen=True)
class StreamOps:
    """The two stream ops every n-stream variant shares (see ``mhc_bench.ops``), one path's."""

    name: str
    stream_pre: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    stream_post_res: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


TORCH_OPS = StreamOps("torch", ops.stream_pre, ops.stream_post_res)
FAST_OPS = StreamOps("fast", fastops.stream_pre, fastops.stream_post_res)


@functools.cache
def _triton_ops() -> StreamOps:
    import mhc_kernels

    return StreamOps("triton", mhc_kernels.stream_pre, mhc_kernels.stream_post_res)


def stream_ops_for(path: str) -> StreamOps:
    """The stream ops of one path; ``"triton"`` fails early where it cannot run."""
    if path == "torch":
        return TORCH_OPS
    if path == "fast":
        return FAST_OPS
    if path == "triton":
        require_usable("triton")
        return _triton_ops()
    raise ValueError(f"path must be one of {PATHS}, got {path!r}")


def stream_ops(kernels: str, device_type: str) -> StreamOps:
    """The stream ops a ``kernels`` choice runs for tensors on ``device_type``."""
    return stream_ops_for(pick(kernels, device_type, PATHS))



def describe(kernels: str, device_type: str, implementations: Collection[str], has_maps: bool = True) -> str:
    """What runs for one choice, device and variant: ``maps=fast streams=fast`` (recorded per cell)."""
    if not has_maps:
        return "x + F(x)" + (" (compiled)" if kernels == "compile" else "")
    text = (f"maps={pick(kernels, device_type, implementations)} "
            f"streams={pick(kernels, device_type, PATHS)}")
    return f"compiled whole model; {text}" if kernels == "compile" else text
