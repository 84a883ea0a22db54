"""Tokenizers behind one small interface: byte-level BPE (HF ``tokenizers``), raw bytes, pretrained.

All mark document ends with one end-of-text token (``eot_id``), which the
token files place after every document, and all save to one ``tokenizer.json``
so that :func:`load_tokenizer` restores any of them from the prepared directory.
A pretrained tokenizer (``tokenizer: hf:<repo>``, e.g. GPT-2's, as nanoGPT uses)
is the repository's ``tokenizer.json`` read by the same ``tokenizers`` library
(:mod:`mhc_bench.data.hub` fetches it); its ids must fit the uint16 token files.
BPE training sees the works in sorted order; with a byte-level alphabet (sorted
ids) and no continuing-subword prefix, the trainer's merge ties break the same
way every run, so the saved file is byte-identical for one ``tokenizers``
version (huggingface/tokenizers#1794 is the prefix case we avoid).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

UINT16_LIMIT = 1 << 16  # token files are uint16: every id must be below this
PRETRAINED_PREFIX = "hf:"
EOT = "<|endoftext|>"
# End-of-text spellings of common pretrained tokenizers, in the order they are looked up.
EOT_CANDIDATES = (EOT, "<|end_of_text|>", "</s>", "<eos>")
BYTES_FORMAT = "mhc-bench-bytes"


class TextTokenizer(Protocol):
    """What the data pipeline, training and evaluation need from a tokenizer."""

    vocab_size: int
    eot_id: int | None

    def encode(self, text: str) -> list[int]: ...

    def encode_batch(self, texts: list[str]) -> list[list[int]]: ...

    def decode(self, ids: list[int]) -> str: ...

    def save(self, path: Path) -> None: ...


class ByteTokenizer:
    """UTF-8 bytes as ids 0..255 plus the end-of-text id 256: no training, tiny tests."""

    vocab_size = 257
    eot_id = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [list(text.encode("utf-8")) for text in texts]

    def decode(self, ids: list[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

    def save(self, path: Path) -> None:
        payload = {"type": BYTES_FORMAT, "version": 1, "vocab_size": self.vocab_size, "eot_id": self.eot_id}
        path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


class BpeTokenizer:
    """A thin wrapper that gives a HF ``tokenizers.Tokenizer`` the :class:`TextTokenizer` shape."""

    def __init__(self, tokenizer) -> None:
        self._tok = tokenizer
        self.vocab_size: int = tokenizer.get_vocab_size()
        self.eot_id: int | None = next(
            (i for i in map(tokenizer.token_to_id, EOT_CANDIDATES) if i is not None), None)

    # No special tokens: a pretrained post-processor may add BOS/EOS; documents get one EOT only.
    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [enc.ids for enc in self._tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(list(ids))

    def save(self, path: Path) -> None:
        self._tok.save(str(path), pretty=True)


def train_bpe(texts: Iterable[str], vocab_size: int) -> BpeTokenizer:
    """Train a byte-level BPE (GPT-2 style pre-tokenizer, all 256 bytes in the alphabet)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    return BpeTokenizer(tok)


def load_tokenizer(path: Path) -> TextTokenizer:
    """Restore the tokenizer saved at ``path`` (a prepared directory's ``tokenizer.json``)."""
    path = Path(path)
    payload = json.loads(path.read_text())
    if payload.get("type") == BYTES_FORMAT:
        return ByteTokenizer()
    from tokenizers import Tokenizer

    return BpeTokenizer(Tokenizer.from_file(str(path)))


def load_pretrained(name: str) -> BpeTokenizer:
    """A pretrained Hub tokenizer (``name`` = ``org/repo[@revision]``, e.g. ``openai-community/gpt2``).

    Raises :class:`~mhc_bench.data.errors.DataSourceError` when it cannot be fetched
    (offline: :class:`~mhc_bench.data.hub.HubOfflineError`), when its ids do not fit the
    uint16 token files, or when it has no end-of-text token to separate documents.
    """
    from tokenizers import Tokenizer

    from mhc_bench.data.errors import DataSourceError
    from mhc_bench.data.hub import tokenizer_file

    tok = Tokenizer.from_file(str(tokenizer_file(name)))
    tok.no_truncation()
    tok.no_padding()
    wrapped = BpeTokenizer(tok)
    if wrapped.vocab_size > UINT16_LIMIT:
        raise DataSourceError(f"tokenizer hf:{name} has {wrapped.vocab_size} ids; the uint16 token files "
                              f"hold at most {UINT16_LIMIT}")
    if wrapped.eot_id is None:
        raise DataSourceError(f"tokenizer hf:{name} has no end-of-text token {list(EOT_CANDIDATES)}")
    return wrapped
