"""Build and load the C kernels (``kernels.c``, ``thinmm.c``) at first use; call them through ctypes.

Why C and not torch ops: per token the stream ops touch ``n*C`` contiguous
values, and Sinkhorn-Knopp 2*iters normalisations of an n x n matrix. As
eager torch ops the first cost several passes over memory each and the
second ~300 dispatches of microsecond-sized ops per layer; as ``torch.compile``
output the Sinkhorn reductions over tiny dims vectorise poorly. Here each op is
one pass over its tokens (OpenMP over tokens, SIMD over C or over token blocks).

The library is compiled once per machine with the system C compiler
(``$CC`` or ``cc``; the same toolchain inductor needs) into the project's
tool cache (``.cache/cpukernels/<hash>/``, keyed by source, flags, compiler
and CPU features) and shared by every later process. Without a compiler, or
with ``MHC_BENCH_CPU_KERNELS=0``, :func:`kernels_for` returns ``None`` and
the custom ops in ``mhc_bench.cpukernels.ops`` run torch-op versions of the same math.

Functions take contiguous CPU tensors of one dtype (fp32 or fp64) and write
their outputs; see ``kernels.c`` for the layouts.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from mhc_bench.paths import tool_cache_dir

SOURCES = tuple(Path(__file__).with_name(name) for name in ("kernels.c", "thinmm.c"))
HEADERS = (Path(__file__).with_name("kernels.h"),)
FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=gnu11")
_SUFFIX = {torch.float32: ("float", "f32"), torch.float64: ("double", "f64")}
_PTR, _I64, _INT, _DBL = ctypes.c_void_p, ctypes.c_longlong, ctypes.c_int, ctypes.c_double
# Elements below which a kernel runs on one thread: at::parallel_for's grain size. Waking a
# second thread costs more than it saves, and on a loaded machine that thread waits for a core.
GRAIN = 32768
_SIGNATURES: dict[str, list] = {
    "pre_fwd": [_I64, _INT, _I64, _PTR, _PTR, _PTR, _INT],
    "pre_bwd": [_I64, _INT, _I64, _PTR, _PTR, _PTR, _PTR, _PTR, _INT],
    "maps_dx_epilogue": [_I64, _INT, _I64, *[_PTR] * 6, _INT],
    "post_res_fwd": [_I64, _INT, _I64, _PTR, _PTR, _PTR, _PTR, _PTR, _INT],
    "post_res_bwd": [_I64, _INT, _I64, *[_PTR] * 9, _INT],
    "sinkhorn_fwd": [_I64, _INT, _INT, _PTR, _PTR, _INT],
    "sinkhorn_bwd": [_I64, _INT, _INT, _PTR, _PTR, _PTR, _INT],
    "sinkhorn_log_fwd": [_I64, _INT, _INT, _PTR, _PTR, _INT],
    "sinkhorn_log_bwd": [_I64, _INT, _INT, _PTR, _PTR, _PTR, _INT],
    "normmm_fwd": [_I64, _I64, _INT, _DBL, _PTR, _PTR, _PTR, _PTR, _INT],
    "normmm_dw": [_I64, _I64, _INT, _PTR, _PTR, _PTR, _INT],
}


def enabled() -> bool:
    return os.environ.get("MHC_BENCH_CPU_KERNELS", "1") != "0"


def _cpu_features() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    return next((line for line in text.splitlines() if line.startswith(("flags", "Features"))), "")


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CC", "cc"))


def _build(real: str, sfx: str) -> Path:
    """Compile (or reuse) ``libmhc_<sfx>.so``; raises ``RuntimeError`` when no compiler works."""
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler ($CC or cc) on PATH")
    flags = [*FLAGS, f"-DREAL={real}", f"-DSFX={sfx}"]
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    texts = [path.read_text() for path in (*SOURCES, *HEADERS)]
    key = hashlib.sha256("\n".join([*texts, *flags, version, _cpu_features(),
                                    platform.machine()]).encode()).hexdigest()[:16]
    target = tool_cache_dir() / "cpukernels" / key / f"libmhc_{sfx}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:  # atomic: parallel jobs may race
        out = Path(tmp) / target.name
        cmd = [cc, *flags, *map(str, SOURCES), "-o", str(out), "-lm"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            names = ", ".join(path.name for path in SOURCES)
            raise RuntimeError(f"{cc} failed on {names}:\n{proc.stderr[-2000:]}")
        os.replace(out, target)
    return target


class Kernels:
    """The C functions of one dtype, called with tensors (pointers, sizes and thread count filled in)."""

    def __init__(self, lib: ctypes.CDLL, sfx: str) -> None:
        self._fns = {}
        for name, argtypes in _SIGNATURES.items():
            fn = getattr(lib, f"{name}_{sfx}")
            fn.argtypes, fn.restype = argtypes, None
            self._fns[name] = fn

    @staticmethod
    def _ptr(t: torch.Tensor | None) -> int | None:
        return None if t is None else t.data_ptr()

    def call(self, name: str, sizes: tuple[int, ...], *tensors: torch.Tensor | None, work: int = 0) -> None:
        """Run kernel ``name`` on torch's threads when ``work`` (default: the largest tensor's
        element count) is worth sharing, as at::parallel_for decides."""
        work = work or max(t.numel() for t in tensors if t is not None)
        threads = torch.get_num_threads() if work > GRAIN else 1
        self._fns[name](*sizes, *(self._ptr(t) for t in tensors), threads)


@functools.cache
def _load(dtype: torch.dtype) -> Kernels | None:
    real, sfx = _SUFFIX[dtype]
    try:
        return Kernels(ctypes.CDLL(str(_build(real, sfx))), sfx)
    except (RuntimeError, OSError) as err:
        print(f"mhc_bench.cpukernels: using torch ops instead of the C kernels ({err})", file=sys.stderr)
        return None


def kernels_for(*tensors: torch.Tensor) -> Kernels | None:
    """The kernels for these tensors (CPU, all fp32 or all fp64), or None: use the torch ops."""
    dtype = tensors[0].dtype
    if not enabled() or dtype not in _SUFFIX:
        return None
    if any(t.device.type != "cpu" or t.dtype != dtype for t in tensors):
        return None
    return _load(dtype)
