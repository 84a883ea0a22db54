"""Deterministic train / evaluation partition of task items by content hash.

An item's side is a function of its question text alone (or of the fact it
asks about, for subjects with several questions per fact), so training text
(any seed, any count) can never contain an evaluated or few-shot item, and
raising the evaluation cap never moves an item across the boundary.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

TRAIN_PERCENT = 30  # share of the item space reserved for training text
EVAL_SEED = 0  # generator seed of the evaluation stream (training streams use their own salt)


def bucket(key: str, salt: str = "mhcb-split-v1") -> int:
    """Stable bucket in [0, 100) of ``key``."""
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def is_train(key: str) -> bool:
    return bucket(key) < TRAIN_PERCENT


def order_key(key: str, seed: int | str) -> str:
    """A seeded, stable sort key: sorting by it is a deterministic shuffle."""
    return hashlib.sha256(f"{seed}\x00{key}".encode()).hexdigest()


def split_items(
    items: Iterable[T], key: Callable[[T], str], side: Callable[[T], str] | None = None
) -> tuple[list[T], list[T]]:
    """(train side, eval side) of ``items``, each deduplicated by key, in input order.

    ``side`` (default: ``key``) names what decides the side: items sharing it stay together.
    """
    side = side or key
    seen: set[str] = set()
    train: list[T] = []
    evaluation: list[T] = []
    for item in items:
        k = key(item)
        if k in seen:
            continue
        seen.add(k)
        (train if is_train(side(item)) else evaluation).append(item)
    return train, evaluation


def take_side(
    stream: Iterator[T], key: Callable[[T], str], n: int, train: bool, max_draws: int = 200_000
) -> list[T]:
    """The first ``n`` distinct items of ``stream`` on one side of the partition."""
    out: list[T] = []
    seen: set[str] = set()
    for _, item in zip(range(max_draws), stream, strict=False):
        k = key(item)
        if k in seen or is_train(k) != train:
            continue
        seen.add(k)
        out.append(item)
        if len(out) == n:
            break
    return out


def seeded_rng(*parts: object) -> random.Random:
    """A ``random.Random`` seeded from a string of ``parts`` (stable across runs and platforms)."""
    return random.Random("/".join(str(p) for p in parts))
