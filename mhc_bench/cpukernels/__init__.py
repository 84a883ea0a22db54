"""Fused CPU kernels of the n-stream ops: C source, its build, and the torch custom ops around it.

``build`` compiles ``kernels.c`` and ``thinmm.c`` at first use and loads them
with ctypes; ``ops`` registers ``torch.ops.mhc_bench.*`` (Sinkhorn-Knopp,
``H_pre x``, ``H_res x + H_post^T y`` and their backwards) on top, and the
maps' projection ``RMSNorm(x) @ W`` and its weight gradient, with torch fallbacks.
"""

from mhc_bench.cpukernels.build import enabled, kernels_for

__all__ = ["enabled", "kernels_for"]
