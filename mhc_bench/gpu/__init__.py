"""GPU readiness without a GPU: ahead-of-time kernel compiles, a cost model, the first-GPU check.

- ``aot``: compile every fused Triton kernel for a CUDA target (sm_80, sm_86,
  sm_90, sm_100) with Triton's own compiler and read registers, spills and
  shared memory from the cubin (``mhc-bench kernels aot``);
- ``shapes``: the shapes and dtypes the profiles launch, plus the paper grid;
- ``cost``: bytes and FLOPs per kernel and a predicted C9 overhead on named
  GPUs (``mhc-bench kernels model``);
- ``check``: ``make gpu-check``, the one command for the first CUDA machine.
"""
