"""Read one cell folder through the cell folder contract (:mod:`mhc_bench.cellfolder`).

Every file is optional: a cell that is missing one is still read, and the gap is
recorded as a :class:`Problem` so the report lists it instead of dropping the cell.
A file that exists but does not match its record is a problem too, never a crash.
Records are kept as plain dicts (``model_dump``) for the tables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mhc_bench import cellfolder as cf
from mhc_bench.definitions import PROBE_LISTS, PROBE_SCALARS, PROBE_VERSION

# Experiments whose claims read lm-eval scores (C8: downstream, else main). The other experiments'
# grid blocks may skip evaluation (a profile's `evaluate: false`), so a missing eval.json there is
# by design, not a problem. A cell whose config names no experiment counts as main's.
SCORED_EXPERIMENTS = ("main", "downstream")


@dataclass(frozen=True)
class Problem:
    """One missing or inconsistent item, shown in the report's "Missing / inconsistent" section."""

    cell_id: str
    kind: str
    detail: str = ""


@dataclass
class Cell:
    """Everything known about one cell; ``None`` where its file is absent or unusable."""

    cell_id: str
    folder: Path
    config: Any = None  # CellConfig: config.yaml (as trained), else cell.yaml (as asked)
    metrics: dict[str, Any] | None = None
    eval: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    gains: dict[str, Any] | None = None
    problems: list[Problem] = field(default_factory=list)


def _guarded(cell: Cell, name: str, read: Callable[[], Any]) -> Any:
    try:
        return read()
    except cf.CellFileError as err:
        cell.problems.append(Problem(cell.cell_id, f"unreadable {name}", err.one_line()))
        return None


def _dump(record: Any) -> dict[str, Any] | None:
    return None if record is None else record.model_dump()


def read_cell(folder: Path, evaluated: bool = True) -> Cell:
    """Read a cell folder; never raises for missing or malformed files. ``evaluated``: whether the
    profile evaluates at all (``eval.enabled``)."""
    cell = Cell(cell_id=folder.name, folder=folder)
    cell.config = _guarded(cell, "config", lambda: cf.read_config(folder))
    cell.metrics = _dump(_guarded(cell, cf.METRICS, lambda: cf.read_metrics(folder)))
    cell.eval = _dump(_guarded(cell, cf.EVAL, lambda: cf.read_eval(folder)))
    cell.gains = _dump(_guarded(cell, cf.GAINS, lambda: cf.read_gains(folder)))
    history = _guarded(cell, cf.HISTORY, lambda: cf.read_history(folder)) or []
    cell.history = [h.model_dump(exclude_none=True) for h in history]
    _drop_stale_probes(cell)

    cid = cell.cell_id
    unreadable = {p.kind for p in cell.problems}
    if cell.config is None and "unreadable config" not in unreadable:
        cell.problems.append(Problem(cid, "no config", f"neither {cf.CONFIG} nor {cf.CELL_YAML}; grid "
                                     f"values taken from {cf.METRICS}"))
    corrupt = {name for name in (cf.METRICS, cf.EVAL) if (folder / f"{name}.corrupt").exists()}
    for name in sorted(corrupt):
        if getattr(cell, "metrics" if name == cf.METRICS else "eval") is None:
            cell.problems.append(Problem(cid, f"corrupt {name}", f"moved aside as {name}.corrupt by a run "
                                         "that found it damaged; `make reproduce` regenerates it"))
    if cell.metrics is None and f"unreadable {cf.METRICS}" not in unreadable and cf.METRICS not in corrupt:
        cell.problems.append(Problem(cid, f"no {cf.METRICS}", "not trained, or training failed before "
                                     "writing it"))
    if (cell.metrics is not None and cell.eval is None and f"unreadable {cf.EVAL}" not in unreadable
            and cf.EVAL not in corrupt and evaluated and expects_eval(cell)):
        cell.problems.append(Problem(cid, f"no {cf.EVAL}", "trained but not evaluated"))
    if cell.eval is not None and cell.eval["status"] == "skipped":
        cell.problems.append(Problem(cid, "eval skipped", str(cell.eval.get("reason") or "")))
    if cell.metrics is not None and cell.metrics["cell_id"] != cid:
        said = cell.metrics["cell_id"]
        cell.problems.append(Problem(cid, "cell id mismatch", f"{cf.METRICS} says {said!r}"))
    return cell


def expects_eval(cell: Cell) -> bool:
    """Whether the cell serves an experiment whose claim reads eval scores (unknown config: yes).

    Numerical replicates (``train.rerun``) are never expected: they measure the loss's numerical
    noise, and a downstream score of the same weights' twin would count one seed twice."""
    if cell.config is None:
        return True
    if cell.config.train.rerun:
        return False
    names = list(cell.config.experiments) or ["main"]
    return any(name in SCORED_EXPERIMENTS for name in names)


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


def read_cells(results_dir: Path, evaluated: bool = True) -> list[Cell]:
    """Every folder under ``<results>/cells/``, sorted by cell id (stable output order); ``evaluated``:
    whether the profile evaluates any cell (else none is expected to have eval.json)."""
    root = results_dir / "cells"
    if not root.is_dir():
        return []
    return [read_cell(p, evaluated) for p in sorted(root.iterdir(), key=lambda p: p.name) if p.is_dir()]


def read_bench(results_dir: Path) -> tuple[dict[str, Any] | None, list[Problem]]:
    """``bench/bench.json`` if present (the overhead benchmark is optional)."""
    import json

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
