"""The ahead-of-time compile table: jobs to worker processes, budgets, JSON and Markdown.

Workers (``python -m mhc_bench.gpu.aot``) run with ``TRITON_INTERPRET``
removed from their environment, so the table can be built from a test
session (which sets it) or any shell. Budgets (issue 12): every kernel
compiles; shared memory fits the target's per-block limit; no register
spills for n <= 4 (spills at n = 8 are reported, not failed).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mhc_bench.gpu.shapes import Shape
from mhc_bench.gpu.targets import ARCHS, occupancy_warps

SPILL_FREE_UP_TO_N = 4
VOLATILE = ("compile_s",)  # differs run to run; kept out of the committed table


def jobs_for(shapes: dict[Shape, list[str]], archs: Iterable[int]) -> list[dict[str, Any]]:
    """One job per (arch, shape), sorted so that a worker's jobs share compiles."""
    jobs = [{"arch": cc, "n": s.n, "C": s.C, "stream": s.stream, "y": s.y, "tokens": s.tokens,
             "sources": src} for cc in archs for s, src in shapes.items()]
    return sorted(jobs, key=lambda j: (j["arch"], j["n"], j["stream"], j["y"], j["C"], j["tokens"]))


def worker_env() -> dict[str, str]:
    """The environment of a compile worker: no interpreter, Triton's default fp fusion made explicit."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    return env


def _run_chunk(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    proc = subprocess.run([sys.executable, "-m", "mhc_bench.gpu.aot"], input=json.dumps(jobs),
                          capture_output=True, text=True, env=worker_env())
    if proc.returncode != 0:
        raise RuntimeError(f"AOT worker failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def compile_jobs(jobs: list[dict[str, Any]], workers: int = 1,
                 log: Callable[[str], None] = lambda _: None) -> list[dict[str, Any]]:
    """Compile every job's kernels in ``workers`` processes (one chunk per arch and n)."""
    chunks: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for job in jobs:
        chunks.setdefault((job["arch"], job["n"]), []).append(job)
    rows: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {key: pool.submit(_run_chunk, chunk) for key, chunk in chunks.items()}
        for (cc, n), future in futures.items():
            got = future.result()
            log(f"sm_{cc} n={n}: {len(got)} kernel rows")
            rows += got
    return [judge(row) for row in rows]


def ptxas_versions(archs: Iterable[int]) -> str:
    """Which ptxas compiled which targets (triton picks ptxas-blackwell from sm_90 on)."""
    from triton.backends.nvidia.compiler import get_ptxas

    by_tool: dict[str, list[str]] = {}
    for cc in sorted(archs):
        tool = get_ptxas(cc)
        release = re.search(r"release ([\d.]+)", subprocess.run([tool.path, "--version"], capture_output=True,
                                                                text=True).stdout)
        name = f"{Path(tool.path).name} {release.group(1) if release else '?'}"
        by_tool.setdefault(name, []).append(f"sm_{cc}")
    return ", ".join(f"{name} ({', '.join(ccs)})" for name, ccs in by_tool.items())


def _clean(message: str) -> str:
    """Drop directory parts of paths from compiler messages (no machine paths in committed files)."""
    return re.sub(r"(?:/[^/\s'\"]+)+/", "", message)


def judge(row: dict[str, Any]) -> dict[str, Any]:
    """Add the target's limits, the occupancy and the budget verdict to one compiled row."""
    arch = ARCHS[row["arch"]]
    row = {**row, "target": arch.name, "smem_limit": arch.smem_limit}
    notes = []
    if not row.get("ok"):
        row["error"] = _clean(row.get("error", ""))
        notes.append("does not compile")
    else:
        row["occupancy_warps"] = occupancy_warps(arch.cc, row["regs"], row["smem"], row["num_warps"])
        if row["smem"] > arch.smem_limit:
            notes.append(f"shared memory {row['smem']} B > {arch.smem_limit} B")
        spills = row["spill_stores"] + row["spill_loads"]
        if spills and row["n"] <= SPILL_FREE_UP_TO_N:
            notes.append(f"spills {row['spill_stores']}/{row['spill_loads']} B at n <= {SPILL_FREE_UP_TO_N}")
    row["within_budget"] = not notes
    row["budget_notes"] = notes
    return row


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per target: compiled / within budget counts, worst registers, spills, shared memory."""
    out: dict[str, Any] = {}
    for cc in sorted({r["arch"] for r in rows}):
        mine = [r for r in rows if r["arch"] == cc]
        ok = [r for r in mine if r.get("ok")]
        out[f"sm_{cc}"] = {
            "rows": len(mine), "compiled": len(ok), "within_budget": sum(r["within_budget"] for r in mine),
            "max_regs": max((r["regs"] for r in ok), default=0),
            "max_smem": max((r["smem"] for r in ok), default=0), "smem_limit": ARCHS[cc].smem_limit,
            "spilling_rows": sum(1 for r in ok if r["spill_stores"] + r["spill_loads"]),
            "spilling_rows_n_le_4": sum(1 for r in ok if r["spill_stores"] + r["spill_loads"]
                                        and r["n"] <= SPILL_FREE_UP_TO_N),
        }
    return out


def write_table(rows: list[dict[str, Any]], out_dir: Path, meta: dict[str, Any]) -> tuple[Path, Path]:
    """``aot.json`` (every row) and ``aot.md`` (summary, paper-shape table, one row per distinct compile)."""
    from mhc_bench.gpu.aot_markdown import render

    out_dir.mkdir(parents=True, exist_ok=True)
    rows = sorted(rows, key=lambda r: (r["arch"], r["n"], r["stream"], r["y"], r["C"], r["tokens"],
                                       r["kernel"]))
    payload = {"schema_version": 1, "meta": meta, "summary": summary(rows), "rows": rows}
    json_path, md_path = out_dir / "aot.json", out_dir / "aot.md"
    # One compact row per line: readable diffs; per-run noise (compile times) stays out of the rows.
    head = json.dumps({k: v for k, v in payload.items() if k != "rows"}, indent=1)[:-2]
    body = ",\n".join(json.dumps({k: v for k, v in r.items() if k not in VOLATILE}) for r in rows)
    json_path.write_text(f'{head},\n "rows": [\n{body}\n]}}\n')
    md_path.write_text(render(payload))
    return json_path, md_path
