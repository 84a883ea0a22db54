"""MMLU-style four-option items from BIG-bench multiple-choice tasks.

Sources (BIG-bench task -> subject): ``elementary_math_qa/question_only``,
``general_knowledge``, ``physics``, ``code_line_description``,
``hindu_knowledge``, ``physical_intuition``. Each item keeps its correct
option plus three distractors drawn with a seed derived from the item, in a
seeded order; items with fewer than four options are dropped.
"""

from __future__ import annotations

from typing import Any

from mhc_bench.taskgen import bigbench_files
from mhc_bench.taskgen.splits import seeded_rng

Item = dict[str, Any]
SOURCES: dict[str, tuple[str, str]] = {
    # subtask: (task.json path, subject for the description)
    "elementary_math": ("elementary_math_qa/question_only/task.json", "elementary mathematics"),
    "general_knowledge": ("general_knowledge/task.json", "general knowledge"),
    "physics": ("physics/task.json", "physics formulas"),
    "code_line_description": ("code_line_description/task.json", "Python code"),
    "hindu_knowledge": ("hindu_knowledge/task.json", "Hindu mythology"),
    "physical_intuition": ("physical_intuition/task.json", "physical intuition"),
}
SUBTASKS: tuple[str, ...] = tuple(SOURCES)


def description(subtask: str) -> str:
    """MMLU's description line, plus the BIG-bench task prefix where the question needs it."""
    text = f"The following are multiple choice questions (with answers) about {SOURCES[subtask][1]}."
    prefix = bigbench_files.load_task_json(SOURCES[subtask][0]).get("task_prefix", "").strip()
    return text + (f" {prefix}" if prefix else "") + "\n\n"


def items(subtask: str) -> list[Item]:
    """All usable examples of ``subtask`` as ``{key, question, choices[4], answer, chance}``."""
    task = bigbench_files.load_task_json(SOURCES[subtask][0])
    out: list[Item] = []
    for ex in task["examples"]:
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
