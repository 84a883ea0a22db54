"""Mix generated task-format text (GSM, BBH, MMLU style) into the training tokens.

``mix_weight`` is the fraction of *training tokens* that come from generated
items, so the target is ``w / (1 - w)`` times the corpus train tokens. Items
are requested in rounds of :data:`ROUND_ITEMS` per task with seeds derived from
``(mix_seed, task, round)``, interleaved task by task, each followed by the
end-of-text token, and taken until the target is reached (whole items only).
With a ``train_tokens`` budget the mix is instead ``round(w * train_tokens)``
tokens, the last item cut, so that ``train.bin`` holds exactly the budget.
The tokenizer never sees this text in training: it is fitted on the corpus
train split alone, so mixing changes ``train.bin`` and nothing else. Every item
is checked against the evaluation items' prompt hashes before it is used.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

import numpy as np

from mhc_bench.data.tokenizer import TextTokenizer

if TYPE_CHECKING:
    from mhc_bench.data.config import DataConfig

TextGenerator = Callable[[str, int, int], list[str]]
GENERATOR_MODULE = "mhc_bench.taskgen.generators"
ROUND_ITEMS = 256
MAX_ROUNDS = 10_000


def generator_identity() -> dict:
    """What names the generated items in the data fingerprint: the generators' explicit version."""
    from mhc_bench.taskgen import GENERATOR_VERSION

    return {"version": GENERATOR_VERSION}


def default_generator() -> TextGenerator:
    """``training_text`` from :mod:`mhc_bench.taskgen`, imported only when mixing is asked for."""
    try:
        from mhc_bench.taskgen.generators import training_text
    except ImportError as err:
        raise RuntimeError(
            f"mix_weight > 0 needs {GENERATOR_MODULE}.training_text(task, seed, n_items), "
            f"which could not be imported ({err}); set mix_weight: 0 or add the generators"
        ) from err
    return training_text


def derived_seed(mix_seed: int, task: str, round_index: int) -> int:
    """A 31-bit seed per (mix_seed, task, round): rounds and tasks never share a stream."""
    digest = hashlib.sha256(f"{mix_seed}:{task}:{round_index}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def _round_documents(batches: dict[str, list[str]]) -> list[tuple[str, str]]:
    """One round's items interleaved task by task: (task, text)."""
    order: list[tuple[str, str]] = []
    for position in range(max(len(batch) for batch in batches.values())):
        order.extend((task, batch[position]) for task, batch in batches.items() if position < len(batch))
    return order


def mixed_tokens(tokenizer: TextTokenizer, target: int, tasks: list[str], mix_seed: int,
                 generator: TextGenerator, forbidden: Collection[str] = frozenset(),
                 exact: bool = False) -> tuple[np.ndarray, dict]:
    """Tokens of generated items (each ending in EOT): whole items until at least ``target`` tokens.

    ``exact`` cuts the last item so that exactly ``target`` tokens come back (a token
    budget). Every round of items is checked against ``forbidden`` evaluation prompt
    hashes first (:mod:`mhc_bench.taskgen.contamination`).
    """
    from mhc_bench.taskgen.contamination import check_documents

    chunks: list[np.ndarray] = []
    total = 0
    items = dict.fromkeys(tasks, 0)
    digest = hashlib.sha256()
    round_index = 0
    while total < target:
        if round_index >= MAX_ROUNDS:
            raise RuntimeError(f"mixing did not reach {target} tokens in {MAX_ROUNDS} rounds")
        batches = {task: list(generator(task, derived_seed(mix_seed, task, round_index), ROUND_ITEMS))
                   for task in tasks}
        if not any(batches.values()):
            raise RuntimeError(f"the text generator returned no items for {tasks} (round {round_index})")
        documents = _round_documents(batches)
        check_documents([text for _, text in documents], forbidden, f"mixed-in text (round {round_index})")
        encoded = tokenizer.encode_batch([text for _, text in documents])
        for (task, text), ids in zip(documents, encoded, strict=True):
            if total >= target:
                break
            digest.update(text.encode("utf-8") + b"\0")
            if tokenizer.eot_id is not None:
                ids = [*ids, tokenizer.eot_id]
            chunks.append(np.asarray(ids, dtype=np.int32))  # ids < 2**16; int32 halves the memory
            total += len(ids)
            items[task] += 1
        round_index += 1
    tokens = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int32)
    if exact:
        tokens = tokens[:target]
    return tokens, {"tokens": int(tokens.size), "items": items, "text_sha256": digest.hexdigest(),
                    "checked_against": len(forbidden)}


def forbidden_hashes(cfg: DataConfig) -> frozenset[str]:
    """Prompt hashes of the evaluation items of the mixed task families (needs their source data)."""
    from mhc_bench.taskgen.contamination import evaluation_prompt_hashes

    return evaluation_prompt_hashes(tuple(sorted(cfg.mix_tasks)))


def mix_for(cfg: DataConfig, tokenizer: TextTokenizer, corpus_train_tokens: int, generator: TextGenerator,
            forbidden: Collection[str]) -> tuple[np.ndarray, dict]:
    """The mixed-in tokens of ``cfg`` and their record for ``meta.json`` (see the module docstring)."""
    budget = cfg.mix_budget()
    target = budget if budget is not None else math.ceil(
        cfg.mix_weight / (1.0 - cfg.mix_weight) * corpus_train_tokens)
    tokens, info = mixed_tokens(tokenizer, target, list(cfg.mix_tasks), cfg.mix_seed, generator,
                                forbidden=forbidden, exact=budget is not None)
    info.update(weight=cfg.mix_weight, tasks=list(cfg.mix_tasks), seed=cfg.mix_seed, target_tokens=target)
    return tokens, info
