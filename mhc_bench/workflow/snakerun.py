"""Run the Snakemake DAG the way every command should: locked, repaired, resumable.

- **One run at a time.** A file lock on the working directory
  (``<workdir>/.snakemake/mhc-bench.lock``, ``filelock``; the workdir is the project root
  unless ``--directory`` moves the results elsewhere) is held for the whole run; a
  second ``make reproduce`` (or ``mhc-bench cell``) is refused with one line naming
  the holder. The kernel releases the lock when its holder dies, however it dies.
- **A killed run resumes by itself.** Snakemake's own lock (``.snakemake/locks``)
  survives a kill and makes the next run fail with ``LockException``. Whoever holds
  the project lock is the only mhc-bench run, so a Snakemake lock found then is
  stale and is removed before starting (runs of raw ``snakemake`` beside mhc-bench
  are not protected: use the make targets or ``mhc-bench`` commands).
- **Broken results are repaired.** A ``metrics.json`` or ``eval.json`` that does not
  match its record (``make report`` lists them), or a ``metrics.json`` whose weights file
  is not the one it recorded (size, sha256: a truncated write), is moved aside as
  ``<name>.corrupt`` so Snakemake regenerates it; training resumes from the cell's
  checkpoint. A run left ``RUNNING`` by a kill after its cell finished is ended.
- **What cannot be repaired is one line, before anything runs:** a damaged MLflow store
  (with the command that rebuilds it from the cell files), a read-only results or
  report folder (instead of Snakemake's ``ProtectedOutputException``).
- Reruns follow the documented policy: ``--rerun-triggers mtime params input``, so
  editing the product's code never retrains finished cells.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from mhc_bench import cellfolder as cf
from mhc_bench.errors import UserError
from mhc_bench.paths import PROJECT_ROOT, require_checkout

STATE_DIR = ".snakemake"  # Snakemake's own state folder, in its working directory
RUN_LOCK = "mhc-bench.lock"
RERUN_POLICY = ["--rerun-triggers", "mtime", "params", "input"]
# `run:` jobs (writing a cell's YAML) run in a thread of the Snakemake process, not in a
# spawned Snakemake that re-parses the workflow: ~4.5 s each, 71 of them in quick.
IN_PROCESS_RUN_JOBS = ["--force-use-threads"]


@contextlib.contextmanager
def project_lock(what: str, workdir: Path = PROJECT_ROOT) -> Iterator[None]:
    """Hold the working directory's run lock, or raise a :class:`UserError` naming who holds it.

    The holder (pid, command, since when) is written next to the lock (``mhc-bench.lock.json``):
    the lock file itself belongs to ``filelock``.
    """
    lock_path = Path(workdir) / STATE_DIR / RUN_LOCK
    holder_path = lock_path.with_name(RUN_LOCK + ".json")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            holder = holder_path.read_text().strip()
        except OSError:
            holder = ""
        raise UserError(f"another mhc-bench run is in progress ({holder or 'another process'}); wait for it "
                        f"to finish or stop it, then run again") from None
    try:
        holder_path.write_text(json.dumps({"pid": os.getpid(), "run": what,
                                           "since": time.strftime("%Y-%m-%d %H:%M:%S")}))
        yield
    finally:
        holder_path.unlink(missing_ok=True)
        lock.release()


def clear_stale_snakemake_locks(workdir: Path = PROJECT_ROOT) -> bool:
    """Remove Snakemake's locks (call only while holding the run lock); True if any were found."""
    locks = Path(workdir) / STATE_DIR / "locks"
    if not locks.is_dir() or not any(locks.iterdir()):
        return False
    shutil.rmtree(locks)
    return True


def quarantine_broken_outputs(cells_root: Path) -> list[tuple[Path, str]]:
    """Move aside every metrics.json / eval.json that does not match its record, and every
    metrics.json whose weights differ from what it recorded; returns (moved file, why)."""
    moved: list[tuple[Path, str]] = []
    if not cells_root.is_dir():
        return moved
    for cell_dir in sorted(p for p in cells_root.iterdir() if p.is_dir()):
        for name, read in ((cf.METRICS, cf.read_metrics), (cf.EVAL, cf.read_eval)):
            try:
                record = read(cell_dir)
                why = cf.weights_problem(cell_dir, record) if name == cf.METRICS and record else None
            except cf.CellFileError as err:
                why = err.one_line()
            if why is not None:
                target = cell_dir / f"{name}.corrupt"
                (cell_dir / name).replace(target)
                moved.append((target, why))
    return moved


def finish_stale_runs(results_root: Path, uri: str) -> list[str]:
    """End the runs a kill left ``RUNNING`` although their cell's metrics.json exists (the kill fell
    between the two writes); returns their ids. Reads the store without MLflow when none is."""
    from mhc_bench import mlstore, tracking

    db = tracking.sqlite_path(uri)
    if db is None or not db.exists():
        return []
    running = set(mlstore.running_runs(db))
    if not running:
        return []
    done = []
    for metrics_file in sorted(results_root.glob(f"cells/*/{cf.METRICS}")):
        try:
            metrics = cf.read_metrics(metrics_file.parent)
        except cf.CellFileError:
            continue
        if metrics is not None and metrics.mlflow_run_id in running:
            tracking.end_run(tracking.RunRef(metrics.mlflow_run_id, uri, "", ""), "FINISHED")
            done.append(metrics.mlflow_run_id)
    return done


def read_only_problem(roots: list[Path], deep: bool) -> str | None:
    """One line naming what a run could not write under ``roots`` (folders, and with ``deep`` every
    file and folder below them), or None."""
    blocked: list[Path] = []
    for root in roots:
        existing = next((p for p in (root, *root.parents) if p.exists()), None)
        if existing is None:
            continue
        tree = [existing]
        if deep and existing == root and root.is_dir():
            tree += [p for p in sorted(root.rglob("*")) if STATE_DIR not in p.parts]
        blocked += [p for p in tree if not os.access(p, os.W_OK)]
    if not blocked:
        return None
    first = blocked[0]
    return (f"cannot write the results: {first} is read-only ({len(blocked)} read-only file(s) or "
            f"folder(s) in all); make them writable (chmod -R u+w {first}) or pass --directory to a "
            "writable folder")


def check_store_before_run(results_root: Path, uri: str, profile: str) -> None:
    """A damaged SQLite store is one line, with the command that rebuilds it (the check also
    deletes a half-built store that holds no run, so that it is created afresh)."""
    from mhc_bench import mlstore, tracking

    db = tracking.sqlite_path(uri)
    if db is not None:
        mlstore.check_store(db, f"mhc-bench store rebuild --profile {profile}")


def snakemake_command(profile_file: Path, targets: list[str], cores: str, extra: list[str],
                      workdir: Path) -> list[str]:
    """Targets first: ``--configfile`` and ``--rerun-triggers`` take several values."""
    where = [] if Path(workdir).resolve() == PROJECT_ROOT.resolve() else [
        "--snakefile", str(PROJECT_ROOT / "Snakefile"), "--directory", str(workdir)]
    return [sys.executable, "-m", "snakemake", *targets, "--cores", cores, "--rerun-incomplete",
            "--configfile", str(Path(profile_file).resolve()), *RERUN_POLICY, *IN_PROCESS_RUN_JOBS, *where,
            *extra]


def run_snakemake(what: str, profile_file: Path, results_root: Path, targets: list[str], cores: str,
                  extra: list[str], workdir: Path = PROJECT_ROOT, config: dict | None = None,
                  report_only: bool = False, before: Callable[[], None] | None = None) -> int:
    """Run Snakemake under the run lock, after the checks and repairs of the module docstring.

    ``results_root`` is relative to ``workdir`` (Snakemake's working directory); ``config`` is the
    validated profile (its store and report folder are checked); ``report_only`` repairs nothing
    (the report lists what is broken); ``before`` runs under the lock, first.
    """
    workdir = Path(workdir).resolve()
    require_checkout()
    dry = "--dry-run" in extra or "-n" in extra
    if not dry:  # what this run writes: Snakemake's state, the results, (the report)
        results = workdir / results_root
        problem = read_only_problem([workdir / STATE_DIR, results], deep=not report_only)
        if report_only and config is not None:
            summary = [results / "summary.csv"] if (results / "summary.csv").exists() else []
            problem = problem or read_only_problem(
                [*summary, workdir / config["report_dir"] / config["profile"]], deep=True)
        if problem is not None:
            raise UserError(problem)
    with project_lock(what, workdir):
        if clear_stale_snakemake_locks(workdir):
            print("removed a stale Snakemake lock left by an interrupted run", file=sys.stderr)
        if before is not None:
            before()
        if config is not None and not report_only and not dry:
            from mhc_bench.workflow.grid import tracking_uri

            uri = tracking_uri(config)
            with contextlib.chdir(workdir):
                check_store_before_run(results_root, uri, config["profile"])
                for run_id in finish_stale_runs(results_root, uri):
                    print(f"ended MLflow run {run_id}, left RUNNING by a kill after its cell finished",
                          file=sys.stderr)
        if not report_only and not dry:
            for path, why in quarantine_broken_outputs(workdir / results_root / "cells"):
                print(f"moved aside {path.with_suffix('').name} as {path} (will be regenerated): {why}",
                      file=sys.stderr)
        cmd = snakemake_command(profile_file, targets, cores, extra, workdir)
        print(" ".join(cmd[2:]), flush=True)
        return subprocess.call(cmd, cwd=PROJECT_ROOT)
