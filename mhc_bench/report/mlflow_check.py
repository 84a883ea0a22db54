"""Cross-check the cell folders against the MLflow store (one run per cell, run name = cell id).

The per-cell JSON files are the source of truth; MLflow mirrors them. A cell
without a run, a run without a cell folder, or a run id that disagrees with
``metrics.json`` is reported. An absent store (a fresh clone, results copied
without ``mlflow.db``) is said plainly and the report goes on: the store is
never created here, because opening a missing SQLite file would create it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mhc_bench import tracking
from mhc_bench.report.cells import Cell, Problem


@dataclass
class TrackingCheck:
    """Outcome of the cross-check; ``status`` is checked | absent | unsupported | error."""

    status: str
    uri: str | None
    experiment: str | None
    message: str
    runs: dict[str, list[str]] = field(default_factory=dict)  # run name -> run ids
    problems: list[Problem] = field(default_factory=list)


def _candidate_uris(results_dir: Path, cells: list[Cell]) -> list[str]:
    """URIs named by the cells (metrics.json first, then their config), then the store next to them."""
    uris: list[str] = []
    for cell in cells:
        configured = cell.config.tracking.tracking_uri if cell.config is not None else None
        for uri in ((cell.metrics or {}).get("mlflow_tracking_uri"), configured):
            if uri and uri not in uris:
                uris.append(str(uri))
    default = tracking.sqlite_uri(results_dir / tracking.STORE_FILE)
    if default not in uris:
        uris.append(default)
    return uris


def _experiment(cells: list[Cell], profile: str) -> str:
    for cell in cells:
        name = (cell.metrics or {}).get("mlflow_experiment") or (
            cell.config.tracking.experiment if cell.config is not None else None)
        if name:
            return str(name)
    return profile


def resolve_store(results_dir: Path, cells: list[Cell]) -> tuple[str | None, list[str]]:
    """The first existing SQLite store among the candidates (a copied results folder falls
    back to its own ``mlflow.db``) and the list of candidates tried."""
    candidates = _candidate_uris(results_dir, cells)
    for uri in candidates:
        path = tracking.sqlite_path(uri)
        if path is not None and path.is_file():
            return uri, candidates
    return None, candidates


def check_tracking(results_dir: Path, cells: list[Cell], profile: str) -> TrackingCheck:
    """Compare run names in the experiment with the cell folders."""
    experiment = _experiment(cells, profile)
    uri, candidates = resolve_store(results_dir, cells)
    if uri is None:
        others = [u for u in candidates if tracking.sqlite_path(u) is None]
        if others:
            return TrackingCheck(
                "unsupported",
                others[0],
                experiment,
                f"MLflow store {others[0]} is not a local SQLite file; runs not cross-checked",
            )
        return TrackingCheck(
            "absent",
            candidates[-1],
            experiment,
            "no MLflow store found (tried "
            + ", ".join(candidates)
            + "); the report uses the committed JSON files only",
        )
    try:
        runs = tracking.runs_by_name(uri, experiment)
    except Exception as err:  # a locked, corrupt or foreign store must not stop the report
        return TrackingCheck(
            "error", uri, experiment, f"could not read the MLflow store: {type(err).__name__}: {err}"
        )
    if runs is None:
        return TrackingCheck(
            "checked",
            uri,
            experiment,
            f"experiment {experiment!r} not in the store",
            problems=[Problem(c.cell_id, "no MLflow run", f"experiment {experiment!r} missing")
                      for c in cells],
        )

    problems = []
    folders = {c.cell_id: c for c in cells}
    for cid, cell in folders.items():
        ids = runs.get(cid)
        if not ids:
            problems.append(
                Problem(cid, "no MLflow run", f"no run named {cid!r} in experiment {experiment!r}")
            )
            continue
        if len(ids) > 1:
            problems.append(
                Problem(cid, "several MLflow runs", f"{len(ids)} runs share this name (retries?)")
            )
        expected = (cell.metrics or {}).get("mlflow_run_id")
        if expected and expected not in ids:
            problems.append(
                Problem(
                    cid,
                    "MLflow run id mismatch",
                    f"metrics.json names run {expected}, store has {', '.join(ids)}",
                )
            )
    for name in sorted(set(runs) - set(folders)):
        problems.append(Problem(name, "MLflow run without cell folder", f"run id(s) {', '.join(runs[name])}"))
    message = f"{len(runs)} run name(s) in experiment {experiment!r} at {uri}"
    return TrackingCheck("checked", uri, experiment, message, runs, problems)
