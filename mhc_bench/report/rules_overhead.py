"""C9 (the overhead is small with fused kernels): only fused kernels timed on a GPU can judge it.

Without such a timing the verdict is "inconclusive: needs a GPU", and the kernels' performance
model is shown next to it as a *band* of predictions with the assumptions of each end (this
project's kernels vs a paper-like setting), never as evidence for or against the paper.
"""

from __future__ import annotations

from typing import Any

from mhc_bench.report.aggregate import bench_environment
from mhc_bench.report.verdicts import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    Evidence,
    Outcome,
    rule,
    trained_cells,
)


def _is_cpu(hardware: dict[str, Any]) -> bool:
    for key in ("device", "accelerator", "gpu", "cuda"):
        val = hardware.get(key)
        if isinstance(val, str) and val.lower().startswith("cpu"):
            return True
        if key in ("gpu", "cuda") and key in hardware and not val:
            return True
    return False


NEEDS_GPU = ("needs a GPU: the claim is about fused kernels (Triton here), which can only be timed on a "
             "GPU; on CPU they run in Triton's interpreter, whose times say nothing about fused kernels, "
             "and the torch/compile paths are the unfused case the paper quotes at ~25-30 %")


def _predicted(ev: Evidence) -> str:
    """The performance model's prediction, labelled as one, or why there is none."""
    if ev.perf_model is None:
        return "no performance model read"
    return ev.perf_model.summary()


@rule
def overhead_ratio(
    ev: Evidence, variant: str, n: int, paper_ratio: float, tolerance: float, fused_paths: list[str]
) -> Outcome:
    """C9 from bench.json: only fused paths timed on a GPU can judge it; else a GPU is needed (and the
    performance model's prediction, if any, is shown as a prediction)."""
    bench = ev.bench or {}
    rows = [
        r
        for r in bench.get("rows", [])
        if r.get("variant") == variant and r.get("n") == n and r.get("ratio_to_baseline") is not None
    ]
    predicted = _predicted(ev)
    if not rows:
        cells = trained_cells(ev, variant, n=n)
        return Outcome(
            INCONCLUSIVE,
            "—",
            f"{NEEDS_GPU}; no bench.json rows for {variant} n={n} (training cells time the CPU fast path; "
            f"see the overhead table); {predicted}",
            cells,
        )
    rows.sort(key=lambda r: (str(r.get("path")), r.get("d_model") or 0))
    value = "; ".join(f"{r.get('path')} d{r.get('d_model')}: {r['ratio_to_baseline']:.3f}" for r in rows)
    dims = sorted({str(r.get("d_model")) for r in rows})
    paths = "/".join(sorted({str(r.get("path")) for r in rows}))
    scale = f"bench: d_model {'/'.join(dims)}, n {n}, paths {paths}"
    fused = [r for r in rows if r.get("path") in fused_paths]
    if not fused:
        return Outcome(
            INCONCLUSIVE,
            value,
            f"{NEEDS_GPU}; no fused kernels measured ({'/'.join(fused_paths)}), so the measured paths "
            f"cannot test the +6.7 % claim; {predicted}",
            scale=scale,
        )
    if _is_cpu(bench_environment(bench)[0]):
        return Outcome(
            INCONCLUSIVE,
            value,
            f"{NEEDS_GPU}; the fused path was timed on CPU (Triton interpreter): not a timing of fused "
            f"kernels; {predicted}",
            scale=scale,
        )
    best = max(fused, key=lambda r: r.get("d_model") or 0)  # the largest width is closest to the paper
    ratio = float(best["ratio_to_baseline"])
    limit = paper_ratio + tolerance
    verdict = REPRODUCED if ratio <= limit else NOT_REPRODUCED
    return Outcome(
        verdict,
        value,
        f"{best.get('path')} d{best.get('d_model')}: {ratio:.3f} "
        f"{'<=' if verdict == REPRODUCED else '>'} {limit:.3f} (paper {paper_ratio} + {tolerance})",
        scale=scale,
    )
