"""Build (once) the token files of a :class:`DataConfig`: split, tokenizer, ``*.bin``, ``meta.json``.

The output directory is ``<root>/<fingerprint>``; it counts as built when its
``meta.json`` names that fingerprint and every token file has the recorded
size. A whole-work corpus (:mod:`mhc_bench.data.build_works`) is built in a
hidden temporary directory that is renamed into place last, so an interrupted
run never leaves a directory that looks complete, and two concurrent builders
simply keep the first finished one. A row source (:mod:`mhc_bench.data.build_rows`:
local files, a Hub dataset) can take hours, so it is built in
``<root>/.partial-<fingerprint>`` under a file lock and *resumed* from there
after an interruption, then renamed into place the same way.

Everything that can fail without compute (a Hub corpus while offline, a
pretrained tokenizer that cannot be fetched) is checked before the first
document is read. Token files are flat ``uint16`` arrays
(``np.memmap(path, np.uint16, "r")``) with the end-of-text id after every
document (and every mixed item).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from mhc_bench.data import sources
from mhc_bench.data.config import DataConfig
from mhc_bench.data.mixing import TextGenerator, default_generator, forbidden_hashes
from mhc_bench.data.outputs import META, SPLITS, TOKENIZER
from mhc_bench.data.tokenizer import TextTokenizer, load_pretrained
from mhc_bench.paths import data_cache_dir


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

    def train_tokens(self) -> int:
        """Tokens in ``train.bin`` (what one epoch is)."""
        return self.train_bin.stat().st_size // 2


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


def prepare_data(cfg: DataConfig, root: Path | None = None, text_generator: TextGenerator | None = None,
                 eval_hashes: Collection[str] | None = None) -> PreparedData:
    """Return the prepared data of ``cfg``, building it first unless the cache already has it.

    ``root`` defaults to ``data_cache_dir() / "prepared"``. ``text_generator``
    replaces ``mhc_bench.taskgen.generators.training_text`` (tests); it is only
    used, and the real one only imported, when ``cfg.mix_weight > 0``.
    ``eval_hashes`` are the prompt hashes that mixed-in text must not contain
    (default: the evaluation items of the mixed task families).
    """
    root = Path(root) if root is not None else data_cache_dir() / "prepared"
    fingerprint = cfg.fingerprint()
    final = root / fingerprint
    if is_complete(final, fingerprint):
        return PreparedData.from_dir(final)
    row_source = sources.is_row_source(cfg.corpus)
    if row_source:
        from mhc_bench.data.build_rows import row_source as make_source

        make_source(cfg).check_reachable()  # a Hub corpus offline fails here, before any compute
    pretrained = load_pretrained(cfg.pretrained_tokenizer) if cfg.pretrained_tokenizer else None
    generator = None
    forbidden: Collection[str] = ()
    if cfg.mix_weight > 0:
        generator = text_generator if text_generator is not None else default_generator()
        forbidden = eval_hashes if eval_hashes is not None else forbidden_hashes(cfg)
    root.mkdir(parents=True, exist_ok=True)
    if row_source:
        _build_resumable(cfg, fingerprint, root, pretrained, generator, forbidden)
    else:
        _build_at_once(cfg, fingerprint, root, pretrained, generator, forbidden)
    return PreparedData.from_dir(final)


def _build_at_once(cfg: DataConfig, fingerprint: str, root: Path, pretrained: TextTokenizer | None,
                   generator: TextGenerator | None, forbidden: Collection[str]) -> None:
    from mhc_bench.data.build_works import build_works

    final = root / fingerprint
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{fingerprint}-", dir=root))
    try:
        build_works(cfg, fingerprint, tmp, pretrained, generator, forbidden)
        _move_into_place(tmp, final, fingerprint)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _locked(path: Path) -> FileLock:
    """An exclusive lock on ``path`` across processes (the lock file stays; removing it would race)."""
    return FileLock(path)


def _build_resumable(cfg: DataConfig, fingerprint: str, root: Path, pretrained: TextTokenizer | None,
                     generator: TextGenerator | None, forbidden: Collection[str]) -> None:
    from mhc_bench.data.build_rows import build_rows
    from mhc_bench.data.stream import PROGRESS

    final = root / fingerprint
    with _locked(root / f".{fingerprint}.lock"):
        if is_complete(final, fingerprint):  # another process finished it while we waited
            return
        work = root / f".partial-{fingerprint}"
        work.mkdir(exist_ok=True)
        build_rows(cfg, fingerprint, work, pretrained, generator, forbidden)
        (work / PROGRESS).unlink(missing_ok=True)
        _move_into_place(work, final, fingerprint)


def _move_into_place(built: Path, final: Path, fingerprint: str) -> None:
    built.chmod(0o755)  # mkdtemp makes it private; the cache is shared like any other
    if final.exists() and not is_complete(final, fingerprint):
        _discard(final)  # left by something other than this function: never trust it
    try:
        built.rename(final)
    except OSError:
        if not is_complete(final, fingerprint):  # lost a race to a finished build: use that one
            raise


def _discard(path: Path) -> None:
    """Move an incomplete directory aside first, so the final name is free at once."""
    aside = path.with_name(f".stale-{path.name}-{os.getpid()}-{time.time_ns()}")
    path.rename(aside)
    shutil.rmtree(aside, ignore_errors=True)
