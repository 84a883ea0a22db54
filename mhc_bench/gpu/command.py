"""``mhc-bench kernels``: ahead-of-time compile table, cost model, first-GPU check.

- ``aot``: compile every fused kernel for sm_80/86/90/100 without a GPU and
  write ``aot.json`` / ``aot.md`` (registers, spills, shared memory, budgets);
  exits 1 when a kernel misses a budget on a target;
- ``model``: bytes and FLOPs per kernel, predicted times on A100 / H100 and
  the predicted C9 overhead at the paper's 27B shape (``model.json`` / ``model.md``);
- ``gpu-check``: ``make gpu-check``, the one command for the first CUDA machine.

Heavy imports (torch, triton) happen inside ``run`` so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ARCH_CHOICES = (80, 86, 89, 90, 100)
DEFAULT_ARCHS = (80, 86, 90, 100)  # mhc_bench.gpu.targets.DEFAULT_ARCHS (checked by a test)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    aot = sub.add_parser("aot", help="compile every kernel for GPU targets without a GPU; resource table")
    aot.add_argument("--out", type=Path, default=Path("results/kernels"), help="output folder")
    aot.add_argument("--archs", type=int, nargs="+", default=list(DEFAULT_ARCHS), choices=ARCH_CHOICES,
                     help="compute capabilities (sm_100 needs triton's bundled ptxas-blackwell)")
    aot.add_argument("--subset", choices=["all", "ci"], default="all",
                     help="all: paper grid + every profile shape; ci: two (target, shape) pairs (seconds)")
    aot.add_argument("--n", type=int, nargs="+", default=None, help="only these stream counts")
    aot.add_argument("--C", type=int, nargs="+", default=None, help="only these widths")
    aot.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="compile processes")
    model = sub.add_parser("model", help="bytes/FLOPs per kernel and the predicted C9 overhead on A100/H100")
    model.add_argument("--out", type=Path, default=Path("results/kernels"), help="output folder")
    check = sub.add_parser("gpu-check", help="the first-CUDA-machine check (make gpu-check)")
    check.add_argument("--out", type=Path, default=Path("results/gpu-check"), help="output folder")


def _log(msg: str) -> None:
    print(f"[kernels {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_aot(args: argparse.Namespace) -> int:
    import triton

    from mhc_bench.gpu import aot_table, shapes
    from mhc_bench.workflow.grid import PROFILE_DIR

    def wanted(s: shapes.Shape) -> bool:
        return (args.n is None or s.n in args.n) and (args.C is None or s.C in args.C)

    if args.subset == "ci":
        jobs = [job for cc, s, src in shapes.CI_JOBS if cc in args.archs and wanted(s)
                for job in aot_table.jobs_for({s: [src]}, [cc])]
    else:
        found = {s: src for s, src in shapes.all_shapes(PROFILE_DIR).items() if wanted(s)}
        jobs = aot_table.jobs_for(found, args.archs)
    _log(f"{len(jobs)} (target, shape) jobs x 8 kernels on {args.workers} worker(s)")
    started = time.time()
    rows = aot_table.compile_jobs(jobs, args.workers, _log)
    command = f"mhc-bench kernels aot --subset {args.subset} --archs {' '.join(map(str, args.archs))}"
    command += "".join(f" --{k} {' '.join(map(str, v))}" for k, v in (("n", args.n), ("C", args.C)) if v)
    meta = {"command": command,
            "triton": triton.__version__, "ptxas": aot_table.ptxas_versions(args.archs),
            "dot_precision": os.environ.get("MHC_KERNELS_DOT", "tf32x3"), "archs": args.archs,
            "subset": args.subset}
    json_path, md_path = aot_table.write_table(rows, args.out, meta)
    failing = [r for r in rows if not r["within_budget"]]
    _log(f"wrote {json_path} and {md_path} in {time.time() - started:.0f} s: {len(rows)} kernel rows, "
         f"{len(failing)} outside the budget")
    for r in failing[:20]:
        _log(f"  sm_{r['arch']} {r['kernel']} n={r['n']} C={r['C']} {r['stream']}/{r['y']}: "
             f"{'; '.join(r['budget_notes'])}")
    return 1 if failing else 0


def run(args: argparse.Namespace) -> int:
    if args.action == "aot":
        return run_aot(args)
    if args.action == "model":
        from mhc_bench.gpu import cost

        json_path, md_path = cost.write_model(args.out)
        _log(f"wrote {json_path} and {md_path}")
        return 0
    from mhc_bench.gpu import check

    return check.run_check(args.out, _log)
