"""Launch plumbing shared by the kernels: where they run, one launch as data, int64 offsets.

A kernel call is built as a :class:`Launch` (function, grid, arguments,
constexprs, warps, stages) before it runs, so the ahead-of-time compiler
(``mhc_bench.gpu.aot``) can compile exactly what the runtime launches, with
``triton.runtime.jit.MockTensor`` in place of tensors.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import triton
import triton.language as tl

from .configs import INTERPRETER

INTERPRET_HINT = (
    "mhc_kernels runs on CPU tensors only under the Triton interpreter: set TRITON_INTERPRET=1 "
    "in the environment before anything imports triton (or use kernels='torch'/'compile' on CPU)"
)
# tl.dot precision on GPU (the maps projection and its backward). tf32x3 (three tf32 tensor-core
# products, fp32 accumulation) matches the fp32 reference to fp32 rounding and is the default;
# tf32 is one product: inputs rounded to 10 mantissa bits, ~3e-4 relative error on the
# projection and maps within 2e-3 of fp32 even with alpha = 1 (tests/test_kernels_tiling.py);
# ieee uses no tensor cores (and spills at n = 8). The interpreter always computes exact fp32.
DOT_PRECISIONS = ("tf32x3", "tf32", "ieee")
DOT_ENV = "MHC_KERNELS_DOT"


def interpreting() -> bool:
    """Whether triton was loaded in interpreter mode (the flag is read when kernels are defined)."""
    knobs = getattr(triton, "knobs", None)
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0") == "1"  # pragma: no cover - older triton


def check_device(t: torch.Tensor) -> None:
    """Raise a helpful error instead of triton's opaque one for CPU tensors without the interpreter."""
    if not t.is_cuda and not interpreting():
        raise RuntimeError(INTERPRET_HINT)


def dot_precision() -> str:
    """The ``tl.dot`` input precision for GPU launches (``MHC_KERNELS_DOT``, default tf32x3)."""
    value = os.environ.get(DOT_ENV, "tf32x3")
    if value not in DOT_PRECISIONS:
        raise ValueError(f"{DOT_ENV} must be one of {DOT_PRECISIONS}, got {value!r}")
    return value


@dataclass(frozen=True)
class Target:
    """Where launches run: ``arch`` 0 is the interpreter, else a compute capability (80, 90, ...)."""

    arch: int
    sm_count: int = 1


_forced: list[Target] = []


@contextlib.contextmanager
def forced_target(target: Target) -> Iterator[None]:
    """Pick tiles for ``target`` whatever the tensors' device (tests run GPU tilings in the interpreter)."""
    _forced.append(target)
    try:
        yield
    finally:
        _forced.pop()


@functools.cache
def _cuda_target(index: int) -> Target:
    props = torch.cuda.get_device_properties(index)
    return Target(props.major * 10 + props.minor, props.multi_processor_count)


def target_for(t: torch.Tensor) -> Target:
    """The target whose tiles a launch on ``t`` uses."""
    if _forced:
        return _forced[-1]
    if not t.is_cuda:
        return Target(INTERPRETER)
    return _cuda_target(t.device.index if t.device.index is not None else torch.cuda.current_device())


@dataclass(frozen=True)
class Launch:
    """One kernel launch as data: run it with ``launch()``, or compile it ahead of time."""

    name: str
    fn: Any  # triton.JITFunction
    grid: tuple[int, ...]
    args: tuple[Any, ...]  # the non-constexpr arguments, in the kernel's order
    constexprs: dict[str, Any]
    num_warps: int
    num_stages: int

    def __call__(self) -> None:
        self.fn[self.grid](*self.args, **self.constexprs,
                           num_warps=self.num_warps, num_stages=self.num_stages)


@triton.jit
def tile_start(pid, block, stride):
    """First element of a program's tile, ``pid * block * stride``, in int64.

    At paper scale tokens x n x C passes 2^31 (131k tokens at n = 4, C = 4096):
    every offset that scales with the token count starts from this int64 base,
    and only offsets inside one tile (always far below 2^31) stay int32.
    """
    return tl.cast(pid, tl.int64) * block * stride
