"""What a test asserts about an MLflow store: its rows, read straight from SQLite.

``assert_mirrors_cells`` is the invariant every kill, resume and rebuild test checks: exactly
one run per cell name, one value per (run, key, step), and those values equal to what the
cell's files say (:func:`mhc_bench.train.mirror.cell_points`).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any


def rows(db: Path, sql: str, *args: Any) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def duplicate_points(db: Path) -> list[tuple]:
    """(run, key, step) rows logged more than once."""
    return rows(db, "SELECT run_uuid, key, step, count(*) FROM metrics GROUP BY run_uuid, key, step "
                    "HAVING count(*) > 1")


def points(db: Path, run_id: str) -> dict[tuple[str, int], float]:
    return {(k, int(s)): float(v) for k, s, v in
            rows(db, "SELECT key, step, value FROM metrics WHERE run_uuid = ?", run_id)}


def snapshot(db: Path) -> dict[str, Any]:
    """Everything a run mirrors, by run name: id, status, artifact root, params, tags, points."""
    out: dict[str, Any] = {}
    for run_id, name, status, artifact_uri in rows(
            db, "SELECT run_uuid, name, status, artifact_uri FROM runs WHERE lifecycle_stage = 'active'"):
        assert name not in out, f"two runs named {name}"
        out[name] = {
            "run_id": run_id, "status": status, "artifact_uri": artifact_uri,
            "params": dict(rows(db, "SELECT key, value FROM params WHERE run_uuid = ?", run_id)),
            "tags": {k: v for k, v in rows(db, "SELECT key, value FROM tags WHERE run_uuid = ?", run_id)
                     if not k.startswith("mlflow.")},
            "points": points(db, run_id),
        }
    return out


def assert_mirrors_cells(db: Path, cells: list[Path]) -> None:
    from mhc_bench import cellfolder as cf
    from mhc_bench.train.mirror import cell_points

    assert duplicate_points(db) == []
    names = Counter(name for (name,) in rows(db, "SELECT name FROM runs WHERE lifecycle_stage = 'active'"))
    assert all(n == 1 for n in names.values()), names
    for cell in cells:
        metrics = cf.read_metrics(cell)
        assert metrics is not None, cell
        expected, _ = cell_points(cell)
        assert points(db, metrics.mlflow_run_id) == expected, cell.name
        assert names[metrics.cell_id] == 1, cell.name
