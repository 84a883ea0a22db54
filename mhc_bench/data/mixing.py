"""Mix generated task-format text (GSM, BBH, MMLU style) into the training tokens.

``mix_weight`` is the fraction of *training tokens* that come from generated
items, so the target is ``w / (1 - w)`` times the corpus train tokens. Items
are requested in rounds of :data:`ROUND_ITEMS` per task with seeds derived from
``(mix_seed, task, round)``, interleaved task by task, each followed by the
end-of-text token, and taken until the target is reached (whole items only).
The tokenizer never sees this text in training: it is fitted on the corpus
train split alone, so mixing changes ``train.bin`` and nothing else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from mhc_bench.data.tokenizer import TextTokenizer

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


def mixed_tokens(tokenizer: TextTokenizer, target: int, tasks: list[str], mix_seed: int,
                 generator: TextGenerator) -> tuple[list[int], dict]:
    """Tokens of generated items (each ending in EOT) until at least ``target`` tokens."""
    ids: list[int] = []
    items = dict.fromkeys(tasks, 0)
    digest = hashlib.sha256()
    round_index = 0
    while len(ids) < target:
        if round_index >= MAX_ROUNDS:
            raise RuntimeError(f"mixing did not reach {target} tokens in {MAX_ROUNDS} rounds")
        batches = {task: list(generator(task, derived_seed(mix_seed, task, round_index), ROUND_ITEMS))
                   for task in tasks}
        if not any(batches.values()):
            raise RuntimeError(f"the text generator returned no items for {tasks} (round {round_index})")
        for position in range(max(len(batch) for batch in batches.values())):
            for task, batch in batches.items():
                if position >= len(batch) or len(ids) >= target:
                    continue
                text = batch[position]
                digest.update(text.encode("utf-8") + b"\0")
                ids.extend(tokenizer.encode(text))
                if tokenizer.eot_id is not None:
                    ids.append(tokenizer.eot_id)
                items[task] += 1
        round_index += 1
    return ids, {"tokens": len(ids), "items": items, "text_sha256": digest.hexdigest()}
