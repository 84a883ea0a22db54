"""The MLflow SQLite store as a file: atomic creation, a health check, and the few direct writes.

Why a module of its own: MLflow builds a new SQLite store's schema in place, table after
table, and a process killed meanwhile leaves a half-built file that every later open fails
on ("table ... already exists"). Here the schema is built in a temporary file beside the
store and renamed over it, so the store path holds either nothing or a complete store.

:func:`check_store` is run before a store is used (``PRAGMA quick_check`` and the schema
revision): a damaged store is said in one line with the command that rebuilds it from the
cell files (``mhc-bench store rebuild``); a damaged store with no runs in it holds nothing
and is rebuilt silently.

The direct SQL writes (MLflow has no API for them) are kept here: a run's artifact URI
pointed at its cell folder, points of one (run, key, step) replaced, runs left ``RUNNING``
by a kill finished. Importing this module imports neither MLflow nor SQLAlchemy.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from mhc_bench.errors import UserError

REBUILD_HINT = "mhc-bench store rebuild --profile <profile>"


class StoreError(UserError):
    """A store that exists but cannot be used."""


@contextlib.contextmanager
def connect(db: Path) -> Iterator[sqlite3.Connection]:
    """A short-lived connection, committed on success (waits up to 30 s for a writer)."""
    con = sqlite3.connect(db, timeout=30)
    try:
        with con:
            yield con
    finally:
        con.close()


def head_revision() -> str:
    """The schema revision this MLflow writes (its newest alembic migration)."""
    from mlflow.store.db.utils import _get_latest_schema_revision

    return _get_latest_schema_revision()


def forget_engines(db: Path) -> None:
    """Close MLflow's pooled connections to ``db`` (a cached engine would keep writing to a file
    that was moved aside or replaced)."""
    try:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    except ImportError:  # pragma: no cover
        return
    target = Path(db).resolve()
    for uri, engine in list(getattr(SqlAlchemyStore, "_engine_map", {}).items()):
        path = uri[len("sqlite:///"):].split("?", 1)[0] if uri.startswith("sqlite:///") else None
        if path is not None and Path(path).resolve() == target:
            engine.dispose()


def create_store_file(db: Path) -> None:
    """Build an empty MLflow store at ``db`` atomically (call under the store lock)."""
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables

    db.parent.mkdir(parents=True, exist_ok=True)
    tmp = db.with_name(f".{db.name}.creating")
    for leftover in (tmp, tmp.with_name(tmp.name + "-journal")):
        leftover.unlink(missing_ok=True)
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp}")
    quiet = [logging.getLogger(name) for name in ("mlflow.store.db.utils", "alembic")]
    levels = [log.level for log in quiet]
    try:
        for log in quiet:  # "Creating initial MLflow database tables...": not the user's business
            log.setLevel(logging.WARNING)
        _initialize_tables(engine)
    finally:
        engine.dispose()
        for log, level in zip(quiet, levels, strict=True):
            log.setLevel(level)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    forget_engines(db)
    os.replace(tmp, db)


def _problem(db: Path, head: str) -> tuple[str | None, int]:
    """(what is wrong or None, number of runs it holds; -1 when unknown)."""
    try:
        with connect(db) as con:
            check = [row[0] for row in con.execute("PRAGMA quick_check")]
            if check != ["ok"]:
                return f"fails SQLite's integrity check ({check[0][:120]})", _count_runs(con)
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            runs = _count_runs(con) if "runs" in tables else 0
            if "alembic_version" not in tables:
                return "has no MLflow schema (its creation was interrupted)", runs
            found = [row[0] for row in con.execute("SELECT version_num FROM alembic_version")]
            if found != [head]:
                return (f"has MLflow schema revision {found[0] if found else 'none'}, not {head} (its "
                        "creation was interrupted, or another MLflow version wrote it)"), runs
            return None, runs
    except sqlite3.DatabaseError as err:
        if "locked" in str(err):
            raise
        return f"is not a readable SQLite database ({err})", -1


def _count_runs(con: sqlite3.Connection) -> int:
    try:
        return int(con.execute("SELECT count(*) FROM runs").fetchone()[0])
    except sqlite3.DatabaseError:
        return -1


def check_store(db: Path, hint: str = REBUILD_HINT, repair_empty: bool = True) -> None:
    """Raise :class:`StoreError` (one line) when the store at ``db`` is damaged; an absent store
    is fine (it is created on first use) and, with ``repair_empty``, a damaged store that holds
    no run is deleted so that it is created afresh."""
    if not db.exists():
        return
    for attempt in range(6):
        try:
            problem, runs = _problem(db, head_revision())
            break
        except sqlite3.OperationalError:  # locked by a writer for longer than the timeout
            if attempt == 5:
                raise
            time.sleep(1)
    if problem is None:
        return
    if runs == 0 and repair_empty:  # a half-built store: nothing to lose
        forget_engines(db)
        for path in (db, db.with_name(db.name + "-journal")):
            path.unlink(missing_ok=True)
        return
    raise StoreError(f"the MLflow store {db} {problem}; the cell files are the source of truth: rebuild "
                     f"the store from them with `{hint}` (the damaged file is kept beside it)")


# ----------------------------------------------------------------------------- direct writes
def set_artifact_uri(db: Path, run_id: str, uri: str) -> None:
    """Point a run's artifacts at ``uri`` (MLflow fixes it at creation, under the experiment)."""
    with connect(db) as con:
        con.execute("UPDATE runs SET artifact_uri = ? WHERE run_uuid = ?", (uri, run_id))


def set_run_id(db: Path, old: str, new: str) -> None:
    """Give a freshly created run (tags only, nothing logged yet) another id: a store rebuilt from
    the cell files keeps the run ids the cells' ``metrics.json`` name."""
    with connect(db) as con:
        for table in ("tags", "params", "metrics", "latest_metrics"):
            con.execute(f"UPDATE {table} SET run_uuid = ? WHERE run_uuid = ?", (new, old))
        con.execute("UPDATE runs SET run_uuid = ? WHERE run_uuid = ?", (new, old))


def logged_points(db: Path, run_id: str) -> dict[tuple[str, int], list[float]]:
    """Every logged ``(key, step) -> values`` of a run."""
    points: dict[tuple[str, int], list[float]] = {}
    with connect(db) as con:
        for key, step, value in con.execute(
                "SELECT key, step, value FROM metrics WHERE run_uuid = ? ORDER BY timestamp", (run_id,)):
            points.setdefault((key, int(step)), []).append(float(value))
    return points


def delete_points(db: Path, run_id: str, points: Iterable[tuple[str, int]]) -> None:
    """Remove every value logged at these (key, step) pairs (before logging their replacement)."""
    with connect(db) as con:
        con.executemany("DELETE FROM metrics WHERE run_uuid = ? AND key = ? AND step = ?",
                        [(run_id, key, step) for key, step in points])
        keys = sorted({key for key, _ in points})
        con.executemany("DELETE FROM latest_metrics WHERE run_uuid = ? AND key = ?",
                        [(run_id, key) for key in keys])
        # latest_metrics holds one row per key: rebuild the deleted keys' rows from what remains
        con.executemany(
            "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
            "SELECT key, value, timestamp, step, is_nan, run_uuid FROM metrics "
            "WHERE run_uuid = ? AND key = ? "
            "ORDER BY step DESC, timestamp DESC, value DESC LIMIT 1", [(run_id, key) for key in keys])


def running_runs(db: Path) -> list[str]:
    """Ids of runs still marked ``RUNNING`` (without importing MLflow)."""
    if not db.exists():
        return []
    with connect(db) as con:
        return [row[0] for row in con.execute(
            "SELECT run_uuid FROM runs WHERE status = 'RUNNING' AND lifecycle_stage = 'active'")]
