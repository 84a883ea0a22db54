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


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    # sqlite:///rel/path.db is relative, sqlite:////abs/path.db absolute: both keep what follows "///".
    return Path(uri[len("sqlite:///") :].split("?", 1)[0])


def _candidate_uris(results_dir: Path, cells: list[Cell]) -> list[str]:
    """URIs named by the cells (metrics.json first, then cell.yaml), then the profile default."""
    uris: list[str] = []
    for cell in cells:
        for uri in (
            (cell.metrics or {}).get("mlflow_tracking_uri"),
            ((cell.config or {}).get("tracking") or {}).get("tracking_uri"),
        ):
            if uri and uri not in uris:
                uris.append(str(uri))
    default = f"sqlite:///{(results_dir / 'mlflow.db').resolve()}"
    if default not in uris:
        uris.append(default)
    return uris


def _experiment(cells: list[Cell], profile: str) -> str:
    for cell in cells:
        name = (cell.metrics or {}).get("mlflow_experiment") or (
            (cell.config or {}).get("tracking") or {}
        ).get("experiment")
        if name:
            return str(name)
    return profile


def resolve_store(results_dir: Path, cells: list[Cell]) -> tuple[str | None, list[str]]:
    """The first existing SQLite store among the candidates (a copied results folder falls
    back to its own ``mlflow.db``) and the list of candidates tried."""
    candidates = _candidate_uris(results_dir, cells)
    for uri in candidates:
        path = _sqlite_path(uri)
        if path is not None and path.is_file():
            return uri, candidates
    return None, candidates


def check_tracking(results_dir: Path, cells: list[Cell], profile: str) -> TrackingCheck:
    """Compare run names in the experiment with the cell folders."""
    experiment = _experiment(cells, profile)
    uri, candidates = resolve_store(results_dir, cells)
    if uri is None:
        others = [u for u in candidates if _sqlite_path(u) is None]
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
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            return TrackingCheck(
                "checked",
                uri,
                experiment,
                f"experiment {experiment!r} not in the store",
                problems=[
                    Problem(c.cell_id, "no MLflow run", f"experiment {experiment!r} missing") for c in cells
                ],
            )
        runs: dict[str, list[str]] = {}
        token = None
        while True:
            page = client.search_runs(
                [exp.experiment_id],
                max_results=1000,
                page_token=token,
                order_by=["attributes.start_time ASC"],
            )
            for run in page:
                name = run.info.run_name or run.data.tags.get("mlflow.runName") or run.info.run_id
                runs.setdefault(name, []).append(run.info.run_id)
            token = page.token
            if not token:
                break
    except Exception as err:  # a locked, corrupt or foreign store must not stop the report
        return TrackingCheck(
            "error", uri, experiment, f"could not read the MLflow store: {type(err).__name__}: {err}"
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
