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
  match its record (``make report`` lists them) is moved aside as ``<name>.corrupt``
  so Snakemake regenerates it; training resumes from the cell's checkpoint.
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
from collections.abc import Iterator
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


def quarantine_broken_outputs(cells_root: Path) -> list[Path]:
    """Move aside every metrics.json / eval.json that does not match its record; returns them."""
    moved = []
    if not cells_root.is_dir():
        return moved
    for cell_dir in sorted(p for p in cells_root.iterdir() if p.is_dir()):
        for name, read in ((cf.METRICS, cf.read_metrics), (cf.EVAL, cf.read_eval)):
            try:
                read(cell_dir)
            except cf.CellFileError:
                target = cell_dir / f"{name}.corrupt"
                (cell_dir / name).replace(target)
                moved.append(target)
    return moved


def snakemake_command(profile_file: Path, targets: list[str], cores: str, extra: list[str],
                      workdir: Path) -> list[str]:
    """Targets first: ``--configfile`` and ``--rerun-triggers`` take several values."""
    where = [] if Path(workdir).resolve() == PROJECT_ROOT.resolve() else [
        "--snakefile", str(PROJECT_ROOT / "Snakefile"), "--directory", str(workdir)]
    return [sys.executable, "-m", "snakemake", *targets, "--cores", cores, "--rerun-incomplete",
            "--configfile", str(Path(profile_file).resolve()), *RERUN_POLICY, *IN_PROCESS_RUN_JOBS, *where,
            *extra]


def run_snakemake(what: str, profile_file: Path, results_root: Path, targets: list[str], cores: str,
                  extra: list[str], workdir: Path = PROJECT_ROOT) -> int:
    """Run Snakemake under the run lock, after clearing stale locks and broken outputs.

    ``results_root`` is relative to ``workdir`` (Snakemake's working directory).
    """
    workdir = Path(workdir)
    require_checkout()
    with project_lock(what, workdir):
        if clear_stale_snakemake_locks(workdir):
            print("removed a stale Snakemake lock left by an interrupted run", file=sys.stderr)
        for path in quarantine_broken_outputs(workdir / results_root / "cells"):
            print(f"moved aside unreadable {path.with_suffix('').name}: {path} (will be regenerated)",
                  file=sys.stderr)
        cmd = snakemake_command(profile_file, targets, cores, extra, workdir)
        print(" ".join(cmd[2:]), flush=True)
        return subprocess.call(cmd, cwd=PROJECT_ROOT)
