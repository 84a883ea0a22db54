"""BIG-bench task files, read selectively from the pinned ``bigbench==1.0.0`` sdist.

The sdist is 358 MB but the evaluation needs a few hundred KB of it, so only the
listed members are extracted into ``data_cache_dir()/bigbench/``. A manifest of
sha256 sums makes the step idempotent and catches a corrupted or edited cache.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any

from mhc_bench.fetch import DataIntegrityError, fetch_sdist, sha256_file
from mhc_bench.paths import data_cache_dir

BIGBENCH_VERSION = "1.0.0"
BIGBENCH_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"
MEMBER_ROOT = f"bigbench-{BIGBENCH_VERSION}/bigbench/benchmark_tasks/"

# Every file the task builders read, relative to benchmark_tasks/.
TASK_FILES: tuple[str, ...] = (
    "boolean_expressions/task.py",
    "multistep_arithmetic/task.py",
    "web_of_lies/task.py",
    "date_understanding/task.json",
    "logical_deduction/three_objects/task.json",
    "tracking_shuffled_objects/three_objects/task.json",
    "navigate/task.json",
    "sports_understanding/task.json",
    "elementary_math_qa/question_only/task.json",
    "general_knowledge/task.json",
    "physics/task.json",
    "code_line_description/task.json",
    "hindu_knowledge/task.json",
    "physical_intuition/task.json",
)


def bigbench_dir() -> Path:
    return data_cache_dir() / "bigbench" / BIGBENCH_VERSION


def _manifest_path() -> Path:
    return bigbench_dir() / "manifest.json"


def _files_ok(manifest: dict[str, str], root: Path) -> bool:
    return all(
        (root / rel).is_file() and sha256_file(root / rel) == digest for rel, digest in manifest.items()
    )


def extract_task_files(files: tuple[str, ...] = TASK_FILES) -> Path:
    """Extract ``files`` from the sdist once; return the directory holding them.

    Re-running is a no-op when the manifest lists every file with a matching
    sha256. A file that changed on disk after extraction raises
    ``DataIntegrityError`` rather than being silently re-extracted.
    """
    root = bigbench_dir()
    manifest_file = _manifest_path()
    manifest: dict[str, str] = json.loads(manifest_file.read_text()) if manifest_file.is_file() else {}
    missing = [f for f in files if f not in manifest]
    if not missing:
        bad = [f for f in files if not (root / f).is_file() or sha256_file(root / f) != manifest[f]]
        if bad:
            raise DataIntegrityError(
                f"extracted BIG-bench files {bad} under {root} do not match their recorded sha256; "
                "delete that directory to re-extract"
            )
        return root
    sdist = fetch_sdist("bigbench", BIGBENCH_VERSION, BIGBENCH_SHA256)
    wanted = {MEMBER_ROOT + f: f for f in missing}
    with tarfile.open(sdist, "r:gz") as tar:
        for member in tar:  # one streaming pass; members are read, never extracted wholesale
            rel = wanted.pop(member.name, None)
            if rel is None or not member.isfile():
                continue
            handle = tar.extractfile(member)
            assert handle is not None
            data = handle.read()
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(target.suffix + ".tmp")
            tmp.write_bytes(data)
            tmp.replace(target)
            manifest[rel] = hashlib.sha256(data).hexdigest()
            if not wanted:
                break
    if wanted:
        raise FileNotFoundError(f"{sorted(wanted)} not found in {sdist.name}")
    manifest_file.parent.mkdir(parents=True, exist_ok=True)
    manifest_file.write_text(json.dumps(dict(sorted(manifest.items())), indent=1))
    return root


@functools.cache
def load_task_json(rel: str) -> dict[str, Any]:
    """The parsed ``task.json`` at ``rel`` (relative to benchmark_tasks/), cached; do not mutate."""
    root = extract_task_files()
    return json.loads((root / rel).read_text(encoding="utf-8"))


@functools.cache
def class_constant(rel: str, name: str) -> Any:
    """A literal class attribute (e.g. web_of_lies' ``_names``) from a programmatic task.py.

    Read with ``ast`` so the generators use BIG-bench's own vocabulary without
    importing ``bigbench`` (which is not installed).
    """
    root = extract_task_files()
    tree = ast.parse((root / rel).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise KeyError(f"{name} not found in {rel}")
