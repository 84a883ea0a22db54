"""BBH-style items built from the BIG-bench task files.

BBH's 23 tasks are BIG-bench tasks; this subset keeps eight of them, in BBH's
no-CoT answer format (``Q: ... A: <answer>``):

- programmatic in BIG-bench, regenerated here the way their ``task.py`` does
  with a fixed seed: ``boolean_expressions`` (7-token expressions, as in
  BBH), ``multistep_arithmetic_two`` (two bracketed groups of four numbers,
  numpy ``RandomState`` like the original), ``web_of_lies`` (five sentences,
  BIG-bench's name list);
- from ``task.json``: ``date_understanding``,
  ``logical_deduction_three_objects``, ``tracking_shuffled_objects_three_objects``,
  ``navigate``, ``sports_understanding``.

Lettered tasks list their options as ``(A) ...`` in a seeded order (BIG-bench
often lists the gold option first). Every item carries ``choices`` (the valid
answers in generative format, empty for free-form answers), ``label`` and
``chance`` = 1 / #choices (0 for free-form).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from mhc_bench.taskgen import bigbench_files
from mhc_bench.taskgen.splits import seeded_rng

Item = dict[str, Any]
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

PROGRAMMATIC = ("boolean_expressions", "multistep_arithmetic_two", "web_of_lies")
FROM_JSON: dict[str, str] = {
    "date_understanding": "date_understanding/task.json",
    "logical_deduction_three_objects": "logical_deduction/three_objects/task.json",
    "tracking_shuffled_objects_three_objects": "tracking_shuffled_objects/three_objects/task.json",
    "navigate": "navigate/task.json",
    "sports_understanding": "sports_understanding/task.json",
}
SUBTASKS: tuple[str, ...] = PROGRAMMATIC + tuple(FROM_JSON)
DESCRIPTIONS: dict[str, str] = {
    "boolean_expressions": "Evaluate the result of a random Boolean expression.",
    "multistep_arithmetic_two": "Solve multi-step arithmetic problems.",
    "web_of_lies": "Evaluate a random boolean function expressed as a word problem.",
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


def _item(question: str, target: str, choices: list[str], key: str) -> Item:
    label = choices.index(target) if choices else -1
    chance = 1.0 / len(choices) if choices else 0.0
    return {"key": key, "input": question, "target": target, "choices": choices, "label": label,
            "chance": chance}


# ---------------------------------------------------------------- programmatic
def _bool_expressions(length: int) -> list[tuple[str, ...]]:
    """All valid token sequences of ``length``, enumerated like boolean_expressions/task.py."""
    start, cont, end = {"True", "False", "not", "("}, {"or", "and", ")"}, {"True", "False", ")"}
    nxt = {"start": start, "or": start, "and": start, "not": start, "(": start,
           "True": cont, "False": cont, ")": cont}
    out: list[tuple[str, ...]] = []

    def walk(prefix: tuple[str, ...], remaining: int, depth: int) -> None:
        if remaining == 0:
            if depth == 0 and prefix[-1] in end:
                out.append(prefix)
            return
        for tok in sorted(nxt[prefix[-1] if prefix else "start"]):
            d = depth + (tok == "(") - (tok == ")")
            if d < 0:
                continue
            walk((*prefix, tok), remaining - 1, d)

    walk((), length, 0)
    return sorted(out)


def boolean_expressions_stream(seed: int) -> Iterator[Item]:
    exprs = _bool_expressions(7)
    rng = seeded_rng("boolean_expressions", seed)
    rng.shuffle(exprs)
    for tokens in exprs:
        text = " ".join(tokens)
        value = str(eval(text, {"__builtins__": {}}))  # only True/False/and/or/not/parentheses
        yield _item(f"{text} is", value, ["True", "False"], text)


def multistep_arithmetic_stream(seed: int) -> Iterator[Item]:
    """BBH's ``multistep_arithmetic_two``: depth levels [2], four numbers per innermost group."""
    rng = np.random.RandomState(seed)
    numbers = [str(x) for x in range(-9, 10)]
    ops = ["+", "-", "*"]

    def group() -> str:
        parts = []
        for _ in range(3):
            parts += [str(rng.choice(numbers)), str(rng.choice(ops))]
        return "(" + " ".join(parts) + " " + str(rng.choice(numbers)) + ")"

    while True:
        expr = f"({group()} {rng.choice(ops)} {group()})"
        value = str(eval(expr, {"__builtins__": {}}))  # integers and + - * only
        yield _item(f"{expr} =", value, [], expr)


def web_of_lies_stream(seed: int, sentences: int = 5) -> Iterator[Item]:
    names = list(bigbench_files.class_constant("web_of_lies/task.py", "_names"))
    rng = seeded_rng("web_of_lies", seed)
    while True:
        answer = True
        parts: list[str] = []
        rng.shuffle(names)
        for i in range(sentences):
            truth = rng.choice((True, False))
            answer = answer if truth else not answer
            statement = "tells the truth" if truth else "lies"
            subject = names[i] if i == 0 else f"{names[i]} says {names[i - 1]}"
            parts.append(f"{subject} {statement}.")
        question = " ".join(parts) + f" Does {names[sentences - 1]} tell the truth?"
        yield _item(f"Question: {question}", "Yes" if answer else "No", ["Yes", "No"], question)


STREAMS: dict[str, Callable[[int], Iterator[Item]]] = {
    "boolean_expressions": boolean_expressions_stream,
    "multistep_arithmetic_two": multistep_arithmetic_stream,
    "web_of_lies": web_of_lies_stream,
}


# ---------------------------------------------------------------- from task.json
def _lettered(subtask: str, example: dict[str, Any], stem: str, strip_period: bool) -> Item:
    options = list(example["target_scores"])
    gold = max(options, key=lambda o: example["target_scores"][o])
    seeded_rng(subtask, example["input"], *options).shuffle(options)
    shown = [o.rstrip(".") if strip_period else o for o in options]
    lines = "\n".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(shown))
    choices = [f"({LETTERS[i]})" for i in range(len(options))]
    key = example["input"] + "\x00" + "\x00".join(sorted(options))
    return _item(f"{stem}\nOptions:\n{lines}", choices[options.index(gold)], choices, key)


def _convert(subtask: str, task: dict[str, Any], example: dict[str, Any]) -> Item:
    scores = example["target_scores"]
    text = example["input"].strip()
    if subtask == "navigate":
        target = "Yes" if scores["True"] == 1 else "No"
        stem = f"{task['task_prefix'].strip()} {text}\nOptions:\n- Yes\n- No"
        return _item(stem, target, ["Yes", "No"], text)
    if subtask == "sports_understanding":
        target = "yes" if scores["plausible"] == 1 else "no"
        stem = f'Is the following sentence plausible? "{text.rstrip(".")}."'
        return _item(stem, target, ["yes", "no"], text)
    if subtask == "logical_deduction_three_objects":
        return _lettered(subtask, example, f"{task['task_prefix'].strip()} {text}", strip_period=True)
    return _lettered(subtask, example, text, strip_period=subtask != "date_understanding")


def json_items(subtask: str) -> list[Item]:
    """Every example of a task.json subtask in BBH format, in file order."""
    task = bigbench_files.load_task_json(FROM_JSON[subtask])
    return [_convert(subtask, task, ex) for ex in task["examples"]]


def all_stream(subtask: str, seed: int) -> Iterator[Item]:
    """Items of a programmatic subtask; ``seed`` picks the stream."""
    return STREAMS[subtask](seed)


def is_programmatic(subtask: str) -> bool:
    return subtask in STREAMS


def first(stream: Iterator[Item], n: int) -> list[Item]:
    return list(itertools.islice(stream, n))
