"""Every kernel launch of one mHC residual layer (forward and backward), as data.

``step_launches`` builds the same :class:`~mhc_kernels._launch.Launch`
objects the autograd functions run, with ``MockTensor`` placeholders of the
right dtypes instead of tensors, so ``mhc_bench.gpu.aot`` can compile them
for a GPU that is not there. The dtypes follow the precision policy of
``mhc_bench.ops``: the maps and every map gradient are fp32; ``x`` and the
stream outputs have the stream's dtype; ``y`` (the layer output F(...)) has
its own dtype (bf16 under ``bf16-mixed`` with an fp32 stream).
"""

from __future__ import annotations

import torch
from triton.runtime.jit import MockTensor

from . import configs, maps, stream
from ._launch import Launch, Target

KERNELS = ("maps_fwd_proj", "maps_fwd_sinkhorn", "maps_bwd_sinkhorn", "maps_bwd_x",
           "pre_fwd", "pre_bwd", "post_res_fwd", "post_res_bwd")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def step_launches(n: int, C: int, stream_dtype: str, y_dtype: str, tokens: int, target: Target,
                  iters: int = 20, eps: float = 1e-6) -> list[Launch]:
    """The eight launches of one layer at ``tokens`` tokens, in :data:`KERNELS` order."""
    f32, xs, ys = MockTensor(torch.float32), MockTensor(DTYPES[stream_dtype]), MockTensor(DTYPES[y_dtype])
    T, K = tokens, n * C
    biases = (f32, f32, f32)
    three = (f32, f32, f32)
    launches = maps.fwd_launches(xs, f32, f32, biases, f32, f32, f32, f32, three, T, K, n, iters, eps, target)
    launches += maps.bwd_launches(xs, f32, f32, biases, f32, f32, three, f32, f32, xs, f32, T, K, n, iters,
                                  target)
    launches += [
        stream.pre_fwd_launch(f32, xs, xs, T, C, n, target),
        stream.pre_bwd_launch(f32, xs, xs, f32, xs, T, C, n, target),
        stream.post_res_fwd_launch(f32, xs, f32, ys, xs, T, C, n, target),
        stream.post_res_bwd_launch(f32, xs, f32, ys, xs, f32, xs, f32, ys, T, C, n, target),
    ]
    assert tuple(launch.name for launch in launches) == KERNELS
    return launches


def describe(launch: Launch) -> dict[str, object]:
    """Block sizes and launch options of one launch, for tables."""
    return {"blocks": dict(launch.constexprs), "num_warps": launch.num_warps, "num_stages": launch.num_stages,
            "grid": list(launch.grid)}


__all__ = ["DTYPES", "KERNELS", "configs", "describe", "step_launches"]
