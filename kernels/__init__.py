"""Fused Triton kernels for the mHC n-stream ops (import name ``mhc_kernels``).

Drop-in replacements for ``mhc_bench.ops.mhc_maps``, ``stream_pre`` and
``stream_post_res`` (same signatures and semantics), each a
``torch.autograd.Function`` with Triton forward and backward kernels. Inputs
may be fp32 or bf16 (fp32 accumulation, outputs in the input dtype), any
leading dims, any token count, any n >= 1 (padded to a power of two and
masked inside the kernels), and non-contiguous. On CPU they run only under
``TRITON_INTERPRET=1`` (set before triton is imported); see ``maps.py`` and
``stream.py`` for what is fused, ``configs.py`` for the tiles per GPU target
and ``catalog.py`` for every launch of a training step (the ahead-of-time
compile table, ``mhc-bench kernels aot``, is built from it).

The public names load lazily, so ``mhc_kernels.configs`` (pure Python: tile
sizes and the targets' limits) is usable without importing torch or triton.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"INTERPRET_HINT": "._launch", "interpreting": "._launch", "mhc_maps": ".maps",
            "stream_post_res": ".stream", "stream_pre": ".stream"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
