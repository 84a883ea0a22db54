"""A fresh clone's results: the report rebuilds byte for byte and the DAG has nothing to do.

A clone's files get arbitrary modification times (checkout order), and the report may be built
on any machine: neither may change what the report says or make Snakemake rerun finished work.
Both tests copy the committed quick results (and report) the way a clone has them.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mhc_bench.paths import PROJECT_ROOT
from mhc_bench.provenance import cpu_model

QUICK = PROJECT_ROOT / "results" / "quick"
REPORT = PROJECT_ROOT / "report" / "quick"


def _tracked(prefix: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", prefix], cwd=PROJECT_ROOT, capture_output=True, text=True)
    return [p for p in out.stdout.split("\0") if p]


def _clone(dest: Path, prefixes: tuple[str, ...], seed: int) -> None:
    """The tracked files under ``prefixes`` as a clone has them, with shuffled modification times,
    the worst order last: every result newer than what was built from it."""
    rng = random.Random(seed)
    files = [f for p in prefixes for f in _tracked(p)]
    if not files:
        pytest.skip("no committed results/quick in this checkout")
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT_ROOT / rel, target)
        t = 1.7e9 + rng.uniform(0, 1e6)
        os.utime(target, (t, t))
    rank = {"report": 0, "eval.json": 1, "metrics.json": 2, "cell.yaml": 3}
    for rel in files:
        name = "report" if rel.startswith("report/") else Path(rel).name
        if name in rank:
            t = 1.8e9 + 100 * rank[name] + rng.uniform(0, 50)
            os.utime(dest / rel, (t, t))


def _build(root: Path) -> dict[str, bytes]:
    """Build the report from ``root``'s results/quick, as `make report` runs it (from the root)."""
    from mhc_bench.report.build import build_report

    cwd = Path.cwd()
    os.chdir(root)
    try:
        build_report(Path("results/quick"), Path("report/quick"), "quick")
    finally:
        os.chdir(cwd)
    out = root / "report" / "quick"
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    files["summary.csv"] = (root / "results" / "quick" / "summary.csv").read_bytes()
    return files


def test_two_builds_from_shuffled_copies_are_byte_identical(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    _clone(first, ("results/quick", "results/kernels"), seed=1)
    _clone(second, ("results/quick", "results/kernels"), seed=2)
    a, b = _build(first), _build(second)
    assert sorted(a) == sorted(b) and len([k for k in a if k.startswith("plots/")]) == 9
    assert [k for k in a if a[k] != b[k]] == []
    page = a["report.md"].decode()
    assert "**Hardware** (bench.json)" in page
    bench = json.loads((first / "results" / "quick" / "bench" / "bench.json").read_text())
    if "cpu" not in bench["meta"]["environment"]:  # the building host's CPU must not fill the gap
        assert cpu_model() not in page


def test_a_fresh_clone_has_nothing_to_do(tmp_path: Path) -> None:
    """`mhc-bench reproduce -n` in a clone of the committed results: no job, whatever the file times."""
    _clone(tmp_path, ("results/quick", "report/quick"), seed=3)
    out = subprocess.run(
        [sys.executable, "-m", "mhc_bench.cli", "reproduce", "-n", "--profile", "quick", "--cores", "1",
         "--directory", str(tmp_path)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Nothing to be done" in out.stdout + out.stderr, (out.stdout + out.stderr)[-3000:]


def test_the_committed_report_is_what_make_report_builds(tmp_path: Path) -> None:
    """`make report` on a fresh clone reproduces the committed report/quick byte for byte."""
    committed = REPORT / "report.html"
    marker = b'<meta name="generator" content="mhc-bench report">'
    if not committed.is_file() or marker not in committed.read_bytes():
        pytest.skip("the committed report/quick predates the templated report: regenerate it (make report)")
    _clone(tmp_path, ("results/quick", "results/kernels"), seed=4)
    built = _build(tmp_path)
    differ = [name for name, data in built.items() if name != "summary.csv"
              and (REPORT / name).read_bytes() != data]
    assert differ == [], f"rebuilt files differ from the committed report/quick: {differ}"
    assert built["summary.csv"] == (QUICK / "summary.csv").read_bytes()
