"""Evaluation items must never appear in training text: hashes of their prompts, and the check.

The train / evaluation partition (:mod:`mhc_bench.taskgen.splits`) already keeps
evaluated items out of ``training_text`` by construction; this module verifies
it on the text that is actually mixed in, so a generator bug, a planted item or
a hand-made mixing source is caught before any token is written.

A document's *prompt* is its text before the final answer marker
(``"\\nAnswer:"`` for GSM and MMLU, ``"\\nA:"`` for BBH), whitespace-normalised:
an evaluation item is caught whatever answer follows it. The set covers the
few-shot exemplars and the first :data:`CHECK_ITEMS` evaluated items of every
subtask, a superset of any suite built with ``eval.max_items <= CHECK_ITEMS``.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Collection, Iterable

CHECK_ITEMS = 1000
_ANSWER_MARKERS = ("\nAnswer:", "\nA:")
_SPACE = re.compile(r"\s+")


class ContaminationError(ValueError):
    """Training text contains an evaluation item."""


def prompt_of(document: str) -> str:
    """The document up to its last answer marker, with runs of whitespace collapsed."""
    for marker in _ANSWER_MARKERS:
        cut = document.rfind(marker)
        if cut >= 0:
            document = document[:cut]
            break
    return _SPACE.sub(" ", document).strip()


def prompt_hash(document: str) -> str:
    """sha256 of :func:`prompt_of` (hex)."""
    return hashlib.sha256(prompt_of(document).encode("utf-8")).hexdigest()


@functools.cache
def evaluation_prompt_hashes(families: tuple[str, ...], max_items: int = CHECK_ITEMS) -> frozenset[str]:
    """Prompt hashes of the few-shot and evaluated items of ``families`` (``bbh``, ``gsm``, ``mmlu``)."""
    from mhc_bench.taskgen import generators

    hashes: set[str] = set()
    for family in families:
        for subtask in generators.subtasks(family):
            dev, test = generators.eval_split(family, subtask, max_items)
            hashes.update(prompt_hash(generators.format_item(family, item)) for item in dev + test)
    return frozenset(hashes)


def find_contaminated(documents: Iterable[str], forbidden: Collection[str]) -> list[int]:
    """Indices of the documents whose prompt hash is in ``forbidden``."""
    return [i for i, doc in enumerate(documents) if prompt_hash(doc) in forbidden]


def check_documents(documents: list[str], forbidden: Collection[str], where: str) -> None:
    """Raise :class:`ContaminationError` naming the first evaluation item found in ``documents``."""
    hits = find_contaminated(documents, forbidden)
    if hits:
        first = prompt_of(documents[hits[0]])
        raise ContaminationError(
            f"{where}: {len(hits)} document(s) repeat an evaluation item, first: {first[:120]!r}")
