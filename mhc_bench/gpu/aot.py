"""Compile kernel launches for a CUDA target without a GPU and read their resource usage.

Runs in a worker process where ``TRITON_INTERPRET`` is unset (the interpreter
replaces the compiler; ``mhc_bench.gpu.aot_table`` starts the workers with a
clean environment): ``python -m mhc_bench.gpu.aot`` reads jobs as JSON on
stdin and prints one JSON row per kernel.

Each launch is specialised exactly as Triton's JIT would specialise it at
run time (``native_specialize_impl`` on ``MockTensor`` arguments: dtype,
16-byte alignment, integers divisible by 16 or equal to 1), compiled with
``triton.compile(ASTSource(...), target=GPUTarget("cuda", cc, 32))``, and
measured on the cubin Triton produced: ``cuobjdump --dump-resource-usage``
gives registers, static shared memory and stack; ``ptxas -v`` on the same
PTX with Triton's flags gives spill stores and loads. Dynamic shared memory
is Triton's ``metadata.shared``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TOOLS = ("cuobjdump", "ptxas", "ptxas-blackwell")


def tool(name: str) -> str:
    """Path of a CUDA tool bundled with triton (``backends/nvidia/bin``)."""
    import triton

    return str(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name)


def specialise(launch: Any) -> tuple[dict[str, str], dict[str, Any], dict[tuple[int], list]]:
    """``(signature, constexprs, attrs)`` of a launch, the way the JIT derives them from its arguments."""
    from triton._C.libtriton import native_specialize_impl
    from triton.backends.compiler import BaseBackend

    params = [p for p in launch.fn.params if not p.is_constexpr]
    if len(params) != len(launch.args):
        raise ValueError(f"{launch.name}: {len(launch.args)} arguments for {len(params)} parameters")
    signature: dict[str, str] = {}
    constexprs: dict[str, Any] = {}
    attrs: dict[tuple[int], list] = {}
    for param, arg in zip(params, launch.args, strict=True):
        kind, spec = native_specialize_impl(BaseBackend, arg, False, True, True)
        signature[param.name] = kind
        if kind == "constexpr":
            constexprs[param.name] = spec
        elif isinstance(spec, str) and spec:
            attrs[(param.num,)] = BaseBackend.parse_attr(spec)
    for param in launch.fn.params:
        if param.is_constexpr:
            signature[param.name] = "constexpr"
            constexprs[param.name] = launch.constexprs[param.name]
    ordered = {p.name: signature[p.name] for p in launch.fn.params}
    return ordered, constexprs, attrs


def _parse_usage(text: str) -> dict[str, int]:
    found = re.search(r"REG:(\d+)\s+STACK:(\d+)\s+SHARED:(\d+)\s+LOCAL:(\d+)", text)
    if not found:
        raise RuntimeError(f"cuobjdump printed no resource usage:\n{text}")
    reg, stack, shared, local = (int(v) for v in found.groups())
    return {"regs": reg, "stack_bytes": stack, "smem_static": shared, "local_bytes": local}


def _parse_ptxas(text: str) -> dict[str, int]:
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text)
    regs = re.search(r"Used (\d+) registers", text)
    if not spills or not regs:
        raise RuntimeError(f"ptxas -v printed no usage:\n{text}")
    return {"spill_stores": int(spills.group(1)), "spill_loads": int(spills.group(2)),
            "ptxas_regs": int(regs.group(1))}


def resources(kernel: Any, cc: int) -> dict[str, int]:
    """Registers, spills, stack and shared memory of one compiled kernel."""
    from triton.backends.nvidia.compiler import get_ptxas, sm_arch_from_capability

    with tempfile.TemporaryDirectory() as tmp:
        cubin, ptx = Path(tmp, "k.cubin"), Path(tmp, "k.ptx")
        cubin.write_bytes(kernel.asm["cubin"])
        ptx.write_text(kernel.asm["ptx"])
        usage = subprocess.run([tool("cuobjdump"), "--dump-resource-usage", str(cubin)],
                               capture_output=True, text=True, check=True).stdout
        fmad = [] if kernel.metadata.enable_fp_fusion else ["--fmad=false"]
        cmd = [get_ptxas(cc).path, "-lineinfo", *fmad, "-v", "--regAllocOptLevel=2",
               f"--gpu-name={sm_arch_from_capability(cc)}", str(ptx), "-o", str(Path(tmp, "v.cubin"))]
        log = subprocess.run(cmd, capture_output=True, text=True, check=True).stderr
    out = {**_parse_usage(usage), **_parse_ptxas(log)}
    out["smem_dynamic"] = int(kernel.metadata.shared)
    out["smem"] = out["smem_dynamic"] + out["smem_static"]
    return out


def _root_cause(err: BaseException) -> str:
    """The innermost exception's first line (Triton wraps the real error in CompilationErrors)."""
    while err.__cause__ is not None or err.__context__ is not None:
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"[:300]


def compile_launch(launch: Any, cc: int) -> dict[str, Any]:
    """Compile one launch for compute capability ``cc``; a failure is a row with ``ok: False``."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    started = time.perf_counter()
    try:
        signature, constexprs, attrs = specialise(launch)
        kernel = triton.compile(ASTSource(launch.fn, signature, constexprs, attrs),
                                target=GPUTarget("cuda", cc, 32),
                                options={"num_warps": launch.num_warps, "num_stages": launch.num_stages})
        row: dict[str, Any] = {"ok": True, **resources(kernel, cc)}
    except Exception as err:  # a kernel that does not compile is a table entry, not a crash
        row = {"ok": False, "error": _root_cause(err)}
    row["compile_s"] = round(time.perf_counter() - started, 3)
    return row


def _key(launch: Any, cc: int) -> str:
    signature, constexprs, attrs = specialise(launch)
    return json.dumps([launch.name, cc, signature, sorted(constexprs.items()), sorted(attrs.items()),
                       launch.num_warps, launch.num_stages], default=str)


def run_jobs(jobs: list[dict[str, Any]], emit: Any) -> None:
    """Compile every kernel of every job; ``emit(row)`` per kernel. Identical compiles are reused."""
    from mhc_kernels import catalog
    from mhc_kernels._launch import Target

    from mhc_bench.gpu.targets import ARCHS

    cache: dict[str, dict[str, Any]] = {}
    for job in jobs:
        arch = ARCHS[job["arch"]]
        launches = catalog.step_launches(job["n"], job["C"], job["stream"], job["y"], job["tokens"],
                                         Target(arch.cc, arch.sm_count))
        for launch in launches:
            if job.get("kernels") and launch.name not in job["kernels"]:
                continue
            key = _key(launch, arch.cc)
            if key not in cache:
                cache[key] = compile_launch(launch, arch.cc)
            emit({**job, "kernel": launch.name, **catalog.describe(launch), **cache[key]})


def main() -> int:
    """Worker entry point: jobs on stdin (JSON list), one JSON row per line on stdout."""
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("mhc_bench.gpu.aot: TRITON_INTERPRET is set; ahead-of-time compiles need the real "
              "compiler (run the worker with a clean environment)", file=sys.stderr)
        return 2
    jobs = json.loads(sys.stdin.read())

    def emit(row: dict[str, Any]) -> None:
        print(json.dumps(row), flush=True)

    run_jobs(jobs, emit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
