"""Read one cell folder (cell.yaml, metrics.json, eval.json, history.json, gains.json).

Every file is optional: a cell that is missing one is still read, and the gap is
recorded as a :class:`Problem` so the report lists it instead of dropping the cell.
Python's ``json`` accepts the ``NaN``/``Infinity`` a diverged run may write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mhc_bench.definitions import PROBE_LISTS, PROBE_SCALARS, PROBE_VERSION


@dataclass(frozen=True)
class Problem:
    """One missing or inconsistent item, shown in the report's "Missing / inconsistent" section."""

    cell_id: str
    kind: str
    detail: str = ""


@dataclass
class Cell:
    """Everything known about one cell; ``None`` where its file is absent or unreadable."""

    cell_id: str
    folder: Path
    config: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    eval: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    gains: dict[str, Any] | None = None
    problems: list[Problem] = field(default_factory=list)


def _load(path: Path, cell: Cell, kind: str) -> Any:
    if not path.exists():
        return None
    try:
        text = path.read_text()
        return yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (OSError, ValueError, yaml.YAMLError) as err:
        cell.problems.append(Problem(cell.cell_id, f"unreadable {kind}", f"{type(err).__name__}: {err}"))
        return None


def _mapping(value: Any, cell: Cell, kind: str) -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    cell.problems.append(
        Problem(cell.cell_id, f"unreadable {kind}", f"expected a mapping, got {type(value).__name__}")
    )
    return None


def read_cell(folder: Path) -> Cell:
    """Read a cell folder; never raises for missing or malformed files."""
    cell = Cell(cell_id=folder.name, folder=folder)
    cell.config = _mapping(_load(folder / "cell.yaml", cell, "cell.yaml"), cell, "cell.yaml")
    cell.metrics = _mapping(_load(folder / "metrics.json", cell, "metrics.json"), cell, "metrics.json")
    cell.eval = _mapping(_load(folder / "eval.json", cell, "eval.json"), cell, "eval.json")
    cell.gains = _mapping(_load(folder / "gains.json", cell, "gains.json"), cell, "gains.json")
    history = _load(folder / "history.json", cell, "history.json")
    if isinstance(history, dict):  # tolerate {"history": [...]} / {"records": [...]}
        history = history.get("history", history.get("records"))
    cell.history = [r for r in history if isinstance(r, dict)] if isinstance(history, list) else []

    _drop_stale_probes(cell)
    cid = cell.cell_id
    if cell.config is None and not any(p.kind == "unreadable cell.yaml" for p in cell.problems):
        cell.problems.append(
            Problem(cid, "no cell.yaml", "config unknown; grid values taken from metrics.json")
        )
    if cell.metrics is None and not any(p.kind == "unreadable metrics.json" for p in cell.problems):
        cell.problems.append(
            Problem(cid, "no metrics.json", "not trained, or training failed before writing it")
        )
    if (
        cell.metrics is not None
        and cell.eval is None
        and not any(p.kind == "unreadable eval.json" for p in cell.problems)
    ):
        cell.problems.append(Problem(cid, "no eval.json", "trained but not evaluated"))
    if cell.eval is not None and cell.eval.get("status") == "skipped":
        cell.problems.append(Problem(cid, "eval skipped", str(cell.eval.get("reason", ""))))
    if cell.metrics is not None and cell.metrics.get("cell_id") not in (None, cid):
        cell.problems.append(
            Problem(cid, "cell id mismatch", f"metrics.json says {cell.metrics.get('cell_id')!r}")
        )
    return cell


def _drop_stale_probes(cell: Cell) -> None:
    """Probe values measured under another definition are dropped, never mixed with current ones.

    (The summary row's gain columns are blanked and the cell listed by ``aggregate``.)
    """
    if cell.gains is not None and cell.gains.get("probe_version") != PROBE_VERSION:
        cell.gains = None
    for entry in cell.history:
        if entry.get("probe_version") != PROBE_VERSION:
            for key in (*PROBE_SCALARS, *PROBE_LISTS):
                entry.pop(key, None)


def read_cells(results_dir: Path) -> list[Cell]:
    """Every folder under ``<results>/cells/``, sorted by cell id (stable output order)."""
    root = results_dir / "cells"
    if not root.is_dir():
        return []
    return [read_cell(p) for p in sorted(root.iterdir(), key=lambda p: p.name) if p.is_dir()]


def read_bench(results_dir: Path) -> tuple[dict[str, Any] | None, list[Problem]]:
    """``bench/bench.json`` if present (the overhead benchmark is optional)."""
    path = results_dir / "bench" / "bench.json"
    if not path.exists():
        return None, []
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return None, [Problem("bench/bench.json", "unreadable bench.json", str(err))]
    if not isinstance(data, dict) or not isinstance(data.get("rows", []), list):
        return None, [Problem("bench/bench.json", "unreadable bench.json", "expected {'rows': [...]}")]
    return data, []
