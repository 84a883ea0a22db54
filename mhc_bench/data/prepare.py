"""Build (once) the token files of a :class:`DataConfig`: split, tokenizer, ``*.bin``, ``meta.json``.

The output directory is ``<root>/<fingerprint>``; it counts as built when its
``meta.json`` names that fingerprint and every token file has the recorded
size. Everything is built in a hidden temporary directory next to it and
renamed into place last, so an interrupted run never leaves a directory that
looks complete, and two concurrent builders simply keep the first finished one.
Token files are flat ``uint16`` arrays (``np.memmap(path, np.uint16, "r")``)
with the end-of-text id after every work (and every mixed item).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mhc_bench.data import corpus as corpus_mod
from mhc_bench.data.config import PIPELINE_VERSION, UINT16_LIMIT, DataConfig
from mhc_bench.data.mixing import TextGenerator, default_generator, mixed_tokens
from mhc_bench.data.split import SPLITS, split_by_name, split_shakespeare
from mhc_bench.data.tokenizer import ByteTokenizer, TextTokenizer, train_bpe
from mhc_bench.fetch import sha256_file
from mhc_bench.paths import data_cache_dir

META = "meta.json"
TOKENIZER = "tokenizer.json"


@dataclass(frozen=True)
class PreparedData:
    """Paths and sizes of one prepared data directory."""

    dir: Path
    train_bin: Path
    val_bin: Path
    test_bin: Path
    tokenizer_path: Path
    vocab_size: int
    fingerprint: str

    @classmethod
    def from_dir(cls, directory: Path) -> PreparedData:
        meta = json.loads((directory / META).read_text())
        return cls(dir=directory, train_bin=directory / "train.bin", val_bin=directory / "val.bin",
                   test_bin=directory / "test.bin", tokenizer_path=directory / TOKENIZER,
                   vocab_size=int(meta["vocab_size"]), fingerprint=meta["fingerprint"])

    def meta(self) -> dict:
        """The recorded ``meta.json`` (token counts, split lists, hashes)."""
        return json.loads((self.dir / META).read_text())


def is_complete(directory: Path, fingerprint: str) -> bool:
    """True when ``directory`` holds a finished build of ``fingerprint``."""
    try:
        meta = json.loads((directory / META).read_text())
    except (OSError, ValueError):
        return False
    if meta.get("fingerprint") != fingerprint or not (directory / TOKENIZER).is_file():
        return False
    for split in SPLITS:
        path = directory / f"{split}.bin"
        if not path.is_file() or path.stat().st_size != 2 * int(meta["tokens"][split]):
            return False
    return True


def _encode_works(tokenizer: TextTokenizer, works: dict[str, str], names: list[str]) -> list[int]:
    ids: list[int] = []
    for name in names:
        ids.extend(tokenizer.encode(works[name]))
        if tokenizer.eot_id is not None:
            ids.append(tokenizer.eot_id)
    return ids


def _write_tokens(path: Path, ids: list[int]) -> str:
    array = np.asarray(ids, dtype=np.int64)
    if array.size and (array.min() < 0 or array.max() >= UINT16_LIMIT):
        raise ValueError(f"token ids outside uint16 in {path.name}")
    array.astype("<u2").tofile(path)
    return sha256_file(path)


def _build(cfg: DataConfig, fingerprint: str, out: Path, generator: TextGenerator | None) -> None:
    """Write tokenizer, token files and (last) ``meta.json`` into the empty folder ``out``."""
    works = corpus_mod.load_corpus(cfg.corpus)
    shakespeare = cfg.corpus == corpus_mod.SHAKESPEARE
    splits = split_shakespeare(list(works)) if shakespeare else split_by_name(list(works))

    if cfg.tokenizer == "char":
        tokenizer: TextTokenizer = ByteTokenizer()
    else:
        tokenizer = train_bpe((works[name] for name in splits["train"]), cfg.vocab_size)
    tokenizer.save(out / TOKENIZER)

    ids = {split: _encode_works(tokenizer, works, splits[split]) for split in SPLITS}
    mix_info: dict = {"weight": cfg.mix_weight, "tokens": 0}
    corpus_train_tokens = len(ids["train"])
    if cfg.mix_weight > 0:
        assert generator is not None
        target = math.ceil(cfg.mix_weight / (1.0 - cfg.mix_weight) * corpus_train_tokens)
        extra, info = mixed_tokens(tokenizer, target, list(cfg.mix_tasks), cfg.mix_seed, generator)
        ids["train"].extend(extra)
        mix_info.update(info, tasks=list(cfg.mix_tasks), seed=cfg.mix_seed, target_tokens=target)

    file_sha = {f"{split}.bin": _write_tokens(out / f"{split}.bin", ids[split]) for split in SPLITS}
    tokenizer_sha = sha256_file(out / TOKENIZER)
    identity = cfg.identity()
    meta = {
        "fingerprint": fingerprint,
        "pipeline_version": PIPELINE_VERSION,
        "config": cfg.model_dump(),
        "corpus": identity["corpus"],
        "source_sha256": identity["corpus"]["sha256"],
        "tokenizer": cfg.tokenizer,
        "vocab_size": tokenizer.vocab_size,
        "eot_id": tokenizer.eot_id,
        "tokenizer_sha256": tokenizer_sha,
        "tokenizers_version": _tokenizers_version() if cfg.tokenizer == "bpe" else None,
        "dtype": "uint16",
        "splits": splits,
        "chars": {split: sum(len(works[name]) for name in splits[split]) for split in SPLITS},
        "tokens": {split: len(ids[split]) for split in SPLITS},
        "corpus_train_tokens": corpus_train_tokens,
        "mix": mix_info,
        "files_sha256": file_sha,
    }
    (out / META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def _tokenizers_version() -> str:
    import tokenizers

    return tokenizers.__version__


def prepare_data(cfg: DataConfig, root: Path | None = None,
                 text_generator: TextGenerator | None = None) -> PreparedData:
    """Return the prepared data of ``cfg``, building it first unless the cache already has it.

    ``root`` defaults to ``data_cache_dir() / "prepared"``. ``text_generator``
    replaces ``mhc_bench.taskgen.generators.training_text`` (tests); it is
    only used, and the real one only imported, when ``cfg.mix_weight > 0``.
    """
    root = Path(root) if root is not None else data_cache_dir() / "prepared"
    fingerprint = cfg.fingerprint()
    final = root / fingerprint
    if is_complete(final, fingerprint):
        return PreparedData.from_dir(final)
    generator = None
    if cfg.mix_weight > 0:
        generator = text_generator if text_generator is not None else default_generator()
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{fingerprint}-", dir=root))
    try:
        _build(cfg, fingerprint, tmp, generator)
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared like any other
        if final.exists() and not is_complete(final, fingerprint):
            _discard(final)  # left by something other than this function: never trust it
        try:
            tmp.rename(final)
        except OSError:
            if not is_complete(final, fingerprint):  # lost a race to a finished build: use that one
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return PreparedData.from_dir(final)


def _discard(path: Path) -> None:
    """Move an incomplete directory aside first, so the final name is free at once."""
    aside = path.with_name(f".stale-{path.name}-{os.getpid()}-{time.time_ns()}")
    path.rename(aside)
    shutil.rmtree(aside, ignore_errors=True)
