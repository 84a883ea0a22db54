"""The power plan a profile with a ``power`` section prints before it trains.

It answers, before any compute, what the run can detect: the seeds the profile pairs for the
planned variant against the baseline at the planned scale, the per-seed noise expected there
(the pooled paired-gap SD of an earlier results folder at that scale, else the profile's stated
prior) and the minimum detectable effect next to the paper's effect (mhc_bench/report/noise.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def planned_seeds(config: dict[str, Any], cells: dict[str, dict[str, Any]]) -> int:
    """Seeds the profile trains for the plan's variant at the plan's scale (rerun 0, paired or not)."""
    plan = config["power"]
    return len({c["grid"]["seed"] for c in cells.values() if c["grid"]["variant"] == plan["variant"]
                and c["grid"]["scale"] == plan["scale"] and not c["grid"].get("rerun")})


def prior_sd(plan: dict[str, Any], root: Path) -> tuple[float, str]:
    """The pooled paired-gap SD at the plan's scale in ``prior_results`` (else the stated prior)."""
    folder = root / plan["prior_results"] if plan.get("prior_results") else None
    if folder is not None and (folder / "cells").is_dir():
        from mhc_bench.report import noise
        from mhc_bench.report.aggregate import build_frame
        from mhc_bench.report.cells import read_cells

        frame, _ = build_frame(read_cells(folder))
        scale = _scale_of(frame, plan["scale"])
        pooled = noise.pooled_noise(frame, scale) if scale is not None else noise.NO_NOISE
        if pooled.df:
            return pooled.sd, f"{plan['prior_results']} ({pooled.text()})"
    return float(plan["prior_sd"]), "the profile's prior_sd"


def _scale_of(frame: Any, name: str) -> str | None:
    """The report's scale label (``d128-b6``) of a profile's scale name, when the frame has it."""
    return name if "scale" in frame and name in set(frame["scale"]) else None


def plan_text(config: dict[str, Any], cells: dict[str, dict[str, Any]], root: Path) -> str | None:
    """One paragraph: seeds, noise, MDE vs the paper's effect; None without a ``power`` section."""
    plan = config.get("power")
    if not plan:
        return None
    from mhc_bench.report import noise

    seeds = planned_seeds(config, cells)
    sd, source = prior_sd(plan, root)
    mde = noise.mde(sd, seeds)
    need = noise.seeds_needed(sd, plan["paper_effect"])
    verdict = "powered" if mde <= abs(plan["paper_effect"]) else "underpowered"
    return (f"power plan: {seeds} seeds of {plan['variant']} vs the baseline at {plan['scale']}; expected "
            f"per-seed gap SD {sd:.4f} from {source}; minimum detectable effect (80 % power, two-sided 5 %) "
            f"{mde:.4f} vs the paper's {plan['paper_effect']:+.3f}: {verdict} "
            f"({need if need else 'more than 1000'} seeds would reach it)")
