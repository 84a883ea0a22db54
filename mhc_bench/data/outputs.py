"""The files of a prepared data directory: names, token-file writing, ``meta.json``.

Token files are flat little-endian ``uint16`` arrays (``np.memmap(path, np.uint16, "r")``)
with the end-of-text id after every document (and every mixed item); ``meta.json``
is written last and marks the directory as finished.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mhc_bench.data.tokenizer import UINT16_LIMIT
from mhc_bench.fetch import sha256_file

META = "meta.json"
TOKENIZER = "tokenizer.json"
SPLITS = ("train", "val", "test")


def check_ids(ids: np.ndarray, where: str) -> np.ndarray:
    """``ids`` as little-endian uint16, after checking that every id fits."""
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= UINT16_LIMIT):
        raise ValueError(f"token ids outside uint16 in {where}")
    return ids.astype("<u2")


def write_tokens(path: Path, ids: Sequence[int] | np.ndarray) -> None:
    check_ids(np.asarray(ids, dtype=np.int64), path.name).tofile(path)


def append_tokens(path: Path, ids: np.ndarray) -> None:
    with open(path, "ab") as handle:
        handle.write(check_ids(ids, path.name).tobytes())


def files_sha256(folder: Path) -> dict[str, str]:
    return {f"{split}.bin": sha256_file(folder / f"{split}.bin") for split in SPLITS}


def tokenizers_version(tokenizer_setting: str) -> str | None:
    """The ``tokenizers`` version that trained or read the tokenizer (None for the byte tokenizer)."""
    if tokenizer_setting == "char":
        return None
    import tokenizers

    return tokenizers.__version__


def write_meta(folder: Path, meta: dict) -> None:
    (folder / META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
