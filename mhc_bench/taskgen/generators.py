"""Evaluation splits and training-format text for the three task families.

One partition (``splits.is_train`` on each item's key, or on its fact
``group`` where a pool asks several questions about one fact) decides which items may
appear in training text and which may be evaluated or used as few-shot
exemplars, so ``training_text`` can be mixed into pretraining without leaking
the benchmark. Few-shot exemplars (``dev``) and evaluated items (``test``)
are disjoint slices of the evaluation side.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from typing import Any

from mhc_bench.taskgen import bbh, gsm, mmlu
from mhc_bench.taskgen.splits import EVAL_SEED, order_key, split_items, take_side

Item = dict[str, Any]
FAMILIES = ("bbh", "gsm", "mmlu")
FEWSHOT = {"bbh": 3, "gsm": 8, "mmlu": 5}
TRAIN_STREAM_OFFSET = 1_000_003  # training streams never reuse the evaluation stream's seed
LETTERS = "ABCD"


def subtasks(family: str) -> tuple[str, ...]:
    if family == "bbh":
        return bbh.SUBTASKS
    if family == "gsm":
        return ("gsm",)
    if family == "mmlu":
        return mmlu.SUBTASKS
    raise ValueError(f"unknown task family {family!r}; expected one of {FAMILIES}")


def _key(item: Item) -> str:
    return item["key"]


def _side(item: Item) -> str:
    """What decides an item's side: its fact (``group``) where several questions share one."""
    return item.get("group") or item["key"]


def _stream(family: str, subtask: str, seed: int) -> Iterator[Item] | None:
    """An endless item stream for generated subtasks; None for subtasks backed by a fixed pool."""
    if family == "gsm":
        return gsm.problem_stream(seed)
    if family == "bbh":
        return bbh.all_stream(subtask, seed)
    if family == "mmlu" and mmlu.is_generated(subtask):
        return mmlu.stream(subtask, seed)
    return None


@functools.cache
def _pool(family: str, subtask: str) -> list[Item]:
    """A fixed item pool (cached per process; callers never mutate it)."""
    return mmlu.items(subtask)


def pool_eval_split(items: list[Item], salt: str, k: int, max_items: int) -> tuple[list[Item], list[Item]]:
    """(dev, test) of a fixed pool: its evaluation side in a seeded order, the first ``k`` items as
    exemplars, then at most ``max_items`` items about facts no exemplar shows."""
    _, evaluation = split_items(items, _key, _side)
    ordered = sorted(evaluation, key=lambda it: order_key(it["key"], salt))
    dev = ordered[:k]
    shown = {_side(it) for it in dev}
    test = [it for it in ordered[k:] if _side(it) not in shown][:max_items]
    return dev, test


def eval_split(family: str, subtask: str, max_items: int) -> tuple[list[Item], list[Item]]:
    """(dev, test): few-shot exemplars and at most ``max_items`` evaluated items, deterministic."""
    k = FEWSHOT[family]
    stream = _stream(family, subtask, EVAL_SEED)
    if stream is not None:
        items = take_side(stream, _key, k + max_items, train=False)
        dev, test = items[:k], items[k:]
    else:
        dev, test = pool_eval_split(_pool(family, subtask), f"{family}/{subtask}/eval", k, max_items)
    if not test:
        raise ValueError(f"{family}/{subtask}: only {len(dev)} evaluation items, need more than {k}")
    return dev, test


def train_items(family: str, subtask: str, seed: int, n: int) -> list[Item]:
    """``n`` training-side items of one subtask (a finite pool repeats once exhausted)."""
    stream = _stream(family, subtask, TRAIN_STREAM_OFFSET + seed)
    if stream is not None:
        items = take_side(stream, _key, n, train=True)
    else:
        train, _ = split_items(_pool(family, subtask), _key, _side)
        items = sorted(train, key=lambda it: order_key(it["key"], f"{family}/{subtask}/train/{seed}"))
    if not items:
        return []
    return list(itertools.islice(itertools.cycle(items), n))


def format_item(family: str, item: Item) -> str:
    """An item with its answer, in the prompt format the evaluation uses."""
    if family == "bbh":
        return f"Q: {item['input']}\nA: {item['target']}"
    if family == "gsm":
        return f"Question: {item['question']}\nAnswer: {item['answer']}"
    options = "".join(f"\n{LETTERS[i]}. {c}" for i, c in enumerate(item["choices"]))
    return f"{item['question']}{options}\nAnswer: {LETTERS[item['answer']]}"


def training_text(task: str, seed: int, n_items: int) -> list[str]:
    """``n_items`` task-format documents for pretraining, disjoint from every evaluated item.

    ``task`` is ``"gsm"``, ``"bbh"`` or ``"mmlu"``; subtasks are interleaved
    round-robin. The same ``(task, seed, n_items)`` always gives the same list.
    """
    names = subtasks(task)
    per = -(-n_items // len(names))
    columns = [train_items(task, name, seed, per) for name in names]
    interleaved = [it for row in itertools.zip_longest(*columns) for it in row if it is not None]
    return [format_item(task, it) for it in interleaved[:n_items]]
