"""BIG-bench's own task files, used only when a profile names them (``eval.source: bigbench:<path>``).

The default suite never reads them: the package index that this project's
machines reach no longer serves the ``bigbench==1.0.0`` sdist, so nothing may
depend on it. A user who has BIG-bench (a checkout of its repository, its
``benchmark_tasks`` folder, or the sdist ``bigbench-1.0.0.tar.gz``) can add the
``mhcb_bigbench`` groups: the BBH tasks whose items BIG-bench ships as
``task.json`` (date understanding, logical deduction, tracking shuffled
objects, navigate, sports understanding) in BBH's format, and six BIG-bench
multiple-choice tasks as MMLU-style four-option items. These are the items of
the suite's generator version 1, converted the same way.

Nothing is downloaded: a named path that does not exist, or lacks a file,
is a :class:`~mhc_bench.errors.UserError` naming it.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mhc_bench.errors import UserError
from mhc_bench.taskgen.bbh import item, lettered
from mhc_bench.taskgen.splits import seeded_rng

Item = dict[str, Any]
SCHEME = "bigbench:"
TASKS_DIR = "bigbench/benchmark_tasks"

# subtask -> task.json under benchmark_tasks/
BBH_TASKS: dict[str, str] = {
    "date_understanding": "date_understanding/task.json",
    "logical_deduction_three_objects": "logical_deduction/three_objects/task.json",
    "tracking_shuffled_objects_three_objects": "tracking_shuffled_objects/three_objects/task.json",
    "navigate": "navigate/task.json",
    "sports_understanding": "sports_understanding/task.json",
}
BBH_DESCRIPTIONS: dict[str, str] = {
    "date_understanding": "Infer the date from context.",
    "logical_deduction_three_objects": "A logical deduction task which requires deducing the order of a "
    "sequence of objects.",
    "tracking_shuffled_objects_three_objects": "A task requiring determining the final positions of a set "
    "of objects given their initial positions and a description of a sequence of swaps.",
    "navigate": "Given a series of navigation instructions, determine whether one would end up back at "
    "the starting point.",
    "sports_understanding": "Determine whether an artificially constructed sentence relating to sports is "
    "plausible or not.",
}
# subtask -> (task.json, subject of the MMLU description line)
MMLU_TASKS: dict[str, tuple[str, str]] = {
    "elementary_math": ("elementary_math_qa/question_only/task.json", "elementary mathematics"),
    "general_knowledge": ("general_knowledge/task.json", "general knowledge"),
    "physics": ("physics/task.json", "physics formulas"),
    "code_line_description": ("code_line_description/task.json", "Python code"),
    "hindu_knowledge": ("hindu_knowledge/task.json", "Hindu mythology"),
    "physical_intuition": ("physical_intuition/task.json", "physical intuition"),
}
TASK_FILES: tuple[str, ...] = (*BBH_TASKS.values(), *(path for path, _ in MMLU_TASKS.values()))


@dataclass(frozen=True)
class BigBenchSource:
    """A BIG-bench checkout, ``benchmark_tasks`` folder or sdist on this machine."""

    spec: str
    path: Path

    @property
    def is_archive(self) -> bool:
        return self.path.is_file()

    def identity(self) -> str:
        """Names the files cheaply (the suite's data hashes pin their content): the archive's
        path, size and mtime, or the folder's path and the sha256 of every task file read."""
        if self.is_archive:
            stat = self.path.stat()
            return f"archive:{self.path}:{stat.st_size}:{stat.st_mtime_ns}"
        digest = hashlib.sha256()
        for rel in TASK_FILES:
            digest.update(rel.encode() + b"\0" + (self.path / rel).read_bytes())
        return f"folder:{self.path}:{digest.hexdigest()}"


def parse_source(spec: str, base: Path | None = None) -> BigBenchSource:
    """``bigbench:<path>`` -> the source, checked to exist now (before anything is built).

    A relative path is taken from ``base`` (default: the current directory, which for the
    workflow is its working directory).
    """
    if not spec.startswith(SCHEME) or not spec[len(SCHEME):].strip():
        raise UserError(f"eval.source {spec!r}: expected bigbench:<path to a BIG-bench checkout, its "
                        "benchmark_tasks folder or the bigbench sdist .tar.gz>")
    path = ((base or Path.cwd()) / Path(spec[len(SCHEME):].strip()).expanduser()).resolve()
    if not path.exists():
        raise UserError(f"eval.source {spec!r}: {path} does not exist (BIG-bench task files are never "
                        "downloaded; point it at a checkout or sdist on this machine, or remove eval.source)")
    if path.is_dir():
        for root in (path / TASKS_DIR, path / "benchmark_tasks", path):
            if (root / BBH_TASKS["navigate"]).is_file():
                path = root
                break
        missing = [rel for rel in TASK_FILES if not (path / rel).is_file()]
        if missing:
            raise UserError(f"eval.source {spec!r}: no BIG-bench task files {missing[:3]}"
                            f"{' ...' if len(missing) > 3 else ''} under {path}")
    elif not tarfile.is_tarfile(path):
        raise UserError(f"eval.source {spec!r}: {path} is neither a folder nor a .tar.gz archive")
    return BigBenchSource(spec, path)


def read_tasks(source: BigBenchSource) -> dict[str, dict[str, Any]]:
    """Every parsed ``task.json`` the suite uses, keyed by its path under ``benchmark_tasks/``.

    An archive is read in one streaming pass (members are read, never extracted wholesale).
    """
    if not source.is_archive:
        return {rel: json.loads((source.path / rel).read_text(encoding="utf-8")) for rel in TASK_FILES}
    wanted = set(TASK_FILES)
    found: dict[str, dict[str, Any]] = {}
    marker = f"/{TASKS_DIR}/"
    with tarfile.open(source.path, "r:*") as tar:
        for member in tar:
            rel = member.name.split(marker, 1)[1] if marker in member.name else None
            if rel not in wanted or not member.isfile():
                continue
            handle = tar.extractfile(member)
            assert handle is not None
            found[rel] = json.loads(handle.read().decode("utf-8"))
            if len(found) == len(wanted):
                break
    missing = sorted(wanted - set(found))
    if missing:
        raise UserError(f"eval.source {source.spec!r}: {source.path.name} lacks {missing[:3]}"
                        f"{' ...' if len(missing) > 3 else ''} under */{TASKS_DIR}/")
    return found


# ---------------------------------------------------------------- BBH format
def _lettered(subtask: str, example: dict[str, Any], stem: str, strip_period: bool) -> Item:
    options = list(example["target_scores"])
    gold = max(options, key=lambda o: example["target_scores"][o])
    seeded_rng(subtask, example["input"], *options).shuffle(options)  # BIG-bench often lists gold first
    shown = [o.rstrip(".") if strip_period else o for o in options]
    key = example["input"] + "\x00" + "\x00".join(sorted(options))
    return lettered(stem, shown, options.index(gold), key)


def _convert(subtask: str, task: dict[str, Any], example: dict[str, Any]) -> Item:
    scores = example["target_scores"]
    text = example["input"].strip()
    if subtask == "navigate":
        target = "Yes" if scores["True"] == 1 else "No"
        stem = f"{task['task_prefix'].strip()} {text}\nOptions:\n- Yes\n- No"
        return item(stem, target, ["Yes", "No"], text)
    if subtask == "sports_understanding":
        target = "yes" if scores["plausible"] == 1 else "no"
        stem = f'Is the following sentence plausible? "{text.rstrip(".")}."'
        return item(stem, target, ["yes", "no"], text)
    if subtask == "logical_deduction_three_objects":
        return _lettered(subtask, example, f"{task['task_prefix'].strip()} {text}", strip_period=True)
    return _lettered(subtask, example, text, strip_period=subtask != "date_understanding")


def bbh_items(tasks: dict[str, dict[str, Any]], subtask: str) -> list[Item]:
    """Every example of a BBH ``task.json`` subtask in BBH's format, in file order."""
    task = tasks[BBH_TASKS[subtask]]
    return [_convert(subtask, task, ex) for ex in task["examples"]]


# ---------------------------------------------------------------- MMLU format
def mmlu_description(tasks: dict[str, dict[str, Any]], subtask: str) -> str:
    """MMLU's description line, plus the BIG-bench task prefix where the question needs it."""
    path, subject = MMLU_TASKS[subtask]
    prefix = tasks[path].get("task_prefix", "").strip()
    text = f"The following are multiple choice questions (with answers) about {subject}."
    return text + (f" {prefix}" if prefix else "") + "\n\n"


def mmlu_items(tasks: dict[str, dict[str, Any]], subtask: str) -> list[Item]:
    """The examples with at least four options and one best answer: the gold option plus three
    others drawn with a seed derived from the item, in a seeded order."""
    out: list[Item] = []
    for ex in tasks[MMLU_TASKS[subtask][0]]["examples"]:
        scores: dict[str, float] = ex["target_scores"]
        if len(scores) < 4:
            continue
        best = max(scores.values())
        golds = [o for o, s in scores.items() if s == best]
        if len(golds) != 1:
            continue  # ambiguous gold
        gold = golds[0]
        question = ex["input"].strip()
        rng = seeded_rng("mmlu", subtask, question, *sorted(scores))
        distractors = sorted(o for o in scores if o != gold)
        options = [gold, *rng.sample(distractors, 3)]
        rng.shuffle(options)
        out.append({"key": question, "question": question, "choices": [str(o).strip() for o in options],
                    "answer": options.index(gold), "chance": 0.25})
    return out
