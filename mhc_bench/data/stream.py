"""Tokenize a row source into train / val / test token files under exact token budgets, resumably.

Split rule: a document's split is a function of its text alone (the first 8
bytes of its sha256 as a fraction u: ``u < h`` val, ``u < 2h`` test, else
train, with ``h = holdout_fraction``), so validation is disjoint from training
by document (an exact duplicate always lands on the same side) and raising a
budget never moves a document across splits.

Order and budgets: documents are read in the source's fixed order; each split
takes its documents in that order, every document followed by the end-of-text
id, until it holds exactly its budget (the last document is cut); a split
without a budget takes every document. Reading stops when every split is
full. Per split, ``meta.json`` records the documents taken and a hash chain
over their texts: the order is recorded, not only the content.

Resume: every :data:`CHECKPOINT_TOKENS` tokens the token files are flushed and
``progress.json`` records their lengths, the chains and the ``datasets``
stream's ``state_dict()``. A rerun truncates the files to the recorded lengths
and continues the stream from there, so the finished files are byte-identical
to an uninterrupted run's.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mhc_bench.data.documents import RowSource, texts
from mhc_bench.data.errors import DataSourceError
from mhc_bench.data.tokenizer import UINT16_LIMIT, TextTokenizer

SPLITS = ("train", "val", "test")
BATCH_DOCS = 512
CHECKPOINT_TOKENS = 1 << 24
PROGRESS = "progress.json"
BPE_SAMPLE_CHARS = 50_000_000  # a trained BPE sees at most this much train-side text (the first documents)
_EMPTY_CHAIN = "0" * 64


def split_of(digest: bytes, holdout_fraction: float) -> str:
    """The split of a document whose text has sha256 ``digest``."""
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    if u < holdout_fraction:
        return "val"
    return "test" if u < 2 * holdout_fraction else "train"


@dataclass
class Progress:
    """What ``progress.json`` holds: enough to continue exactly where the last checkpoint stopped."""

    documents_read: int = 0
    skipped_empty: int = 0
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    documents: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    chars: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    chains: dict[str, str] = field(default_factory=lambda: dict.fromkeys(SPLITS, _EMPTY_CHAIN))
    stream_state: dict | None = None
    finished: bool = False

    @classmethod
    def load(cls, folder: Path) -> Progress:
        path = folder / PROGRESS
        return cls(**json.loads(path.read_text())) if path.is_file() else cls()

    def save(self, folder: Path) -> None:
        tmp = folder / f".{PROGRESS}.tmp"
        tmp.write_text(json.dumps(self.__dict__, sort_keys=True))
        tmp.replace(folder / PROGRESS)


def _batches(items: Iterator[str], size: int) -> Iterator[list[str]]:
    while batch := list(itertools.islice(items, size)):
        yield batch


@contextlib.contextmanager
def _parallel_tokenizers() -> Iterator[None]:
    """Let ``encode_batch`` use every core here (mhc-bench turns that off elsewhere: fork warnings)."""
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before


def _progress_bar(total: int | None, initial: int, desc: str):  # -> tqdm
    from tqdm import tqdm

    interactive = sys.stderr.isatty()
    return tqdm(total=total, initial=initial, desc=desc, unit="tok", unit_scale=True,
                mininterval=0.5 if interactive else 30.0, file=sys.stderr)


class _SplitFiles:
    """The three append-only ``<split>.bin`` files (little-endian uint16)."""

    def __init__(self, folder: Path, lengths: dict[str, int]) -> None:
        self.handles = {}
        for split in SPLITS:
            path = folder / f"{split}.bin"
            handle = open(path, "r+b" if path.exists() else "w+b")  # noqa: SIM115 - closed in close()
            handle.truncate(2 * lengths[split])  # drop what was written after the last checkpoint
            handle.seek(0, os.SEEK_END)
            self.handles[split] = handle

    def append(self, split: str, ids: np.ndarray) -> None:
        self.handles[split].write(ids.astype("<u2").tobytes())

    def flush(self) -> None:
        for handle in self.handles.values():
            handle.flush()
            os.fsync(handle.fileno())

    def close(self) -> None:
        for handle in self.handles.values():
            handle.close()


def tokenize_documents(source: RowSource, tokenizer: TextTokenizer, budgets: dict[str, int | None],
                       folder: Path, holdout_fraction: float) -> Progress:
    """Fill ``folder/<split>.bin`` from ``source``, resuming from ``folder/progress.json`` (module doc)."""
    state = Progress.load(folder)
    if state.finished:
        return state
    if tokenizer.vocab_size > UINT16_LIMIT:
        raise DataSourceError(f"{tokenizer.vocab_size} token ids do not fit the uint16 token files")
    eot = [] if tokenizer.eot_id is None else [tokenizer.eot_id]
    stream = source.open()
    if state.stream_state is not None:
        stream.load_state_dict(state.stream_state)
    files = _SplitFiles(folder, state.tokens)
    limited = all(budgets[s] is not None for s in SPLITS)
    total = sum(b for b in budgets.values() if b is not None) if limited else None

    def full(split: str) -> bool:
        budget = budgets[split]
        return budget is not None and state.tokens[split] >= budget

    last_checkpoint = sum(state.tokens.values())
    bar = _progress_bar(total, last_checkpoint, source.describe())
    with _parallel_tokenizers():
        try:
            for batch in _batches(texts(stream, source.field(), source.describe()), BATCH_DOCS):
                wanted: list[tuple[str, str, bytes]] = []
                for text in batch:
                    if not text.strip():
                        state.skipped_empty += 1
                        continue
                    digest = hashlib.sha256(text.encode("utf-8")).digest()
                    split = split_of(digest, holdout_fraction)
                    if not full(split):
                        wanted.append((split, text, digest))
                encoded = tokenizer.encode_batch([text for _, text, _ in wanted]) if wanted else []
                for (split, text, digest), ids in zip(wanted, encoded, strict=True):
                    room = budgets[split]
                    if room is not None and state.tokens[split] >= room:
                        continue
                    tokens = np.asarray([*ids, *eot], dtype=np.int64)
                    if room is not None:
                        tokens = tokens[: room - state.tokens[split]]
                    files.append(split, tokens)
                    state.tokens[split] += int(tokens.size)
                    state.documents[split] += 1
                    state.chars[split] += len(text)
                    chain = bytes.fromhex(state.chains[split]) + digest
                    state.chains[split] = hashlib.sha256(chain).hexdigest()
                    bar.update(int(tokens.size))
                state.documents_read += len(batch)
                done = limited and all(full(s) for s in SPLITS)
                if done or sum(state.tokens.values()) - last_checkpoint >= CHECKPOINT_TOKENS:
                    _checkpoint(files, state, stream, folder)
                    last_checkpoint = sum(state.tokens.values())
                if done:
                    break
            short = [s for s in SPLITS if budgets[s] is not None and not full(s)]
            if short:
                fix = "lower data.train_tokens" if short == ["train"] else \
                    "lower data.val_tokens or raise data.holdout_fraction"
                raise DataSourceError(
                    f"{source.describe()} ran out after {state.documents_read} documents: "
                    + ", ".join(f"{s} has {state.tokens[s]} of {budgets[s]} tokens" for s in short)
                    + f"; {fix}")
            state.finished = True
            _checkpoint(files, state, stream, folder)
        finally:
            bar.close()
            files.close()
    return state


def _checkpoint(files: _SplitFiles, state: Progress, stream, folder: Path) -> None:
    """Flush the token files, then record their lengths and the stream position (in that order)."""
    files.flush()
    state.stream_state = stream.state_dict()
    state.save(folder)


def bpe_sample(source: RowSource, holdout_fraction: float, max_chars: int = BPE_SAMPLE_CHARS) -> list[str]:
    """The first train-side documents of ``source`` up to ``max_chars`` characters: a BPE's training text."""
    sample: list[str] = []
    chars = 0
    for text in texts(source.open(), source.field(), source.describe()):
        if not text.strip():
            continue
        if split_of(hashlib.sha256(text.encode("utf-8")).digest(), holdout_fraction) != "train":
            continue
        sample.append(text)
        chars += len(text)
        if chars >= max_chars:
            break
    if not sample:
        raise DataSourceError(f"{source.describe()} has no training documents to fit a BPE tokenizer on")
    return sample
