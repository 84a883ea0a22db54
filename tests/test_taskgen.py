"""The shared task generators: pinned output per GENERATOR_VERSION, and a package layout without cycles."""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path

import pytest

from mhc_bench.taskgen import GENERATOR_VERSION, generators

PACKAGE = Path(__file__).resolve().parent.parent / "mhc_bench"
# Digest of sample items per generator version. A generator change must bump GENERATOR_VERSION
# (which renames the task-suite cache and changes the fingerprint of mixed data) and record it here.
# Version 1 read part of its items from the bigbench==1.0.0 sdist; version 2 generates every item.
ALL_FAMILIES_DIGESTS = {1: "94914faaf4ddbb65", 2: "f5bdbbc4c31d7422"}
# GSM and the two BBH generators version 2 kept as they were: their items must not have moved.
KEPT_DIGESTS = {1: "fdad76b7c48de055", 2: "fdad76b7c48de055"}
BUMP = "the generators' output changed: bump mhc_bench.taskgen.GENERATOR_VERSION and record the new digest"


def _digest(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def test_kept_generators_match_their_version() -> None:
    parts = {
        "gsm_train": generators.training_text("gsm", 0, 40),
        "gsm_eval": generators.eval_split("gsm", "gsm", 20),
        "bool": generators.eval_split("bbh", "boolean_expressions", 20),
        "arith": generators.train_items("bbh", "multistep_arithmetic_two", 0, 20),
    }
    assert _digest(parts) == KEPT_DIGESTS[GENERATOR_VERSION], BUMP


def test_every_family_matches_its_version() -> None:
    parts: dict = {f: generators.training_text(f, 0, 60) for f in generators.FAMILIES}
    parts.update({f"{f}/{s}": generators.eval_split(f, s, 10)
                  for f in generators.FAMILIES for s in generators.subtasks(f)})
    assert _digest(parts) == ALL_FAMILIES_DIGESTS[GENERATOR_VERSION], BUMP


def _imported_modules(folder: Path) -> set[str]:
    names: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize(("package", "forbidden"), [
    ("data", ("mhc_bench.evaluation",)),
    ("taskgen", ("mhc_bench.data", "mhc_bench.evaluation", "mhc_bench.train")),
])
def test_packages_do_not_import_each_other_in_a_cycle(package: str, forbidden: tuple[str, ...]) -> None:
    """data -> taskgen <- evaluation (and evaluation -> data for the tokenizer): no cycle, even lazily."""
    bad = sorted(m for m in _imported_modules(PACKAGE / package) if m.startswith(forbidden))
    assert not bad, f"mhc_bench.{package} imports {bad}"
