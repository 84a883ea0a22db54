"""Launch helpers shared by the kernels: device checks, block sizes, flattening.

Block sizes differ on purpose between the two back ends: the Triton
interpreter (CPU) pays per program and per op, so it gets few programs with
many tokens each; a GPU gets small tiles that fit in registers.
"""

from __future__ import annotations

import os

import torch
import triton

INTERPRET_HINT = (
    "mhc_kernels runs on CPU tensors only under the Triton interpreter: set TRITON_INTERPRET=1 "
    "in the environment before anything imports triton (or use kernels='torch'/'compile' on CPU)"
)


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


def token_block(n_cols: int, interpret: bool) -> int:
    """Tokens per program: many under the interpreter, a register-sized tile on GPU."""
    if interpret:
        return 128
    return 32 if n_cols <= 4096 else 16


def col_block(width: int, rows: int, interpret: bool, budget: int = 4096) -> int:
    """Columns per loop step so that a ``rows x cols`` tile stays near ``budget`` elements."""
    full = triton.next_power_of_2(width)
    if interpret:
        return min(full, 1024)
    return max(16, min(full, triton.next_power_of_2(max(1, budget // rows))))


def grid_for(tokens: int, block: int) -> tuple[int]:
    return (max(1, triton.cdiv(tokens, block)),)
