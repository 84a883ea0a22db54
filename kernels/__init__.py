"""Fused Triton kernels for the mHC n-stream ops (import name ``mhc_kernels``).

Filled in by the kernels issue; until then importing the ops raises.
"""
