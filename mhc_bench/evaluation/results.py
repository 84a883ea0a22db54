"""Turn lm-eval's result dict into eval.json rows, each score next to its chance level."""

from __future__ import annotations

import json
import math
from typing import Any

from mhc_bench.evaluation.prepare import PreparedTasks, is_multiple_choice


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and math.isfinite(x) else None


def _metric_rows(entry: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """``{"acc": {"value", "stderr"}, "exact_match/strict-match": ...}`` from lm-eval keys."""
    rows: dict[str, dict[str, float | None]] = {}
    for key, value in entry.items():
        if "," not in key or "_stderr," in key:
            continue
        metric, filt = key.split(",", 1)
        name = metric if filt == "none" else f"{metric}/{filt}"
        rows[name] = {"value": _finite(value), "stderr": _finite(entry.get(f"{metric}_stderr,{filt}"))}
    return rows


def leaf_chance(prepared: PreparedTasks, leaf: str, n: int) -> float | None:
    """Mean per-item chance (1/#options) over the first ``n`` evaluated items of a multiple-choice task.

    ``None`` for generated answers (exact match): a model that does not know the options has
    no meaningful chance level, so none is claimed (the report shows "n/a").
    """
    if not is_multiple_choice(prepared.leaves[leaf]["form"]):
        return None
    values = []
    with open(prepared.test_file(leaf), encoding="utf-8") as handle:
        for line, _ in zip(handle, range(n), strict=False):
            values.append(json.loads(line)["chance"])
    return sum(values) / len(values) if values else 0.0


def summarize(results: dict[str, Any], prepared: PreparedTasks) -> dict[str, dict[str, Any]]:
    """Rows for every evaluated leaf task and group: metrics, n, chance (``None`` when undefined)."""
    rows: dict[str, dict[str, Any]] = {}
    n_samples = results.get("n-samples", {})
    for name, entry in results["results"].items():
        if name not in n_samples:
            continue
        n = int(n_samples[name]["effective"])
        local = name in prepared.leaves
        group = prepared.leaves[name]["group"] if local else None
        rows[name] = {"kind": "task", "group": group, "n": n,
                      "chance": leaf_chance(prepared, name, n) if local else None,
                      "metrics": _metric_rows(entry)}
    subtasks: dict[str, list[str]] = results.get("group_subtasks", {})

    def leaves(name: str) -> list[str]:
        children = subtasks.get(name)
        return [name] if children is None else [leaf for c in children for leaf in leaves(c)]

    for name, entry in results.get("groups", {}).items():
        members = [rows[leaf] for leaf in leaves(name) if leaf in rows]
        n = sum(r["n"] for r in members)
        chance = None
        if members and n and all(r["chance"] is not None for r in members):
            chance = sum(r["chance"] * r["n"] for r in members) / n  # groups weight tasks by size
        rows[name] = {"kind": "group", "group": None, "n": n, "chance": chance,
                      "metrics": _metric_rows(entry)}
    return rows
