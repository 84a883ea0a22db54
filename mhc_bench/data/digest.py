"""Content hashes of local corpus files, remembered by (path, size, mtime): large corpora are read once.

The data fingerprint, hence every cell id, covers the *content* of a local corpus,
and cell ids are computed whenever a workflow lists its cells. Hashing gigabytes
of Parquet on every ``snakemake -n`` would be slow, so each file's sha256 is kept
in ``<data cache>/digests/`` keyed by its resolved path and stamped with its size
and modification time (the signature ``make`` and ``git`` trust); a changed file
is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

from mhc_bench.fetch import sha256_file
from mhc_bench.paths import data_cache_dir


def _memo_path(path: Path) -> Path:
    key = hashlib.sha256(str(path).encode()).hexdigest()[:32]
    return data_cache_dir() / "digests" / f"{key}.json"


def file_sha256(path: Path) -> str:
    """sha256 of ``path``'s bytes, from the memo when size and mtime are unchanged."""
    path = Path(path).resolve()
    stat = path.stat()
    stamp = {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    memo = _memo_path(path)
    try:
        saved = json.loads(memo.read_text())
        if {k: saved.get(k) for k in stamp} == stamp:
            return str(saved["sha256"])
    except (OSError, ValueError, KeyError):
        pass
    digest = sha256_file(path)
    memo.parent.mkdir(parents=True, exist_ok=True)
    tmp = memo.with_name(f".{memo.name}.{os.getpid()}")
    tmp.write_text(json.dumps({**stamp, "sha256": digest}))
    tmp.replace(memo)
    return digest


def files_sha256(files: Sequence[Path], names: Sequence[str]) -> str:
    """One hash over the files' names (as given, e.g. relative to the glob's folder) and contents."""
    digest = hashlib.sha256()
    for path, name in zip(files, names, strict=True):
        digest.update(f"{name}\0{file_sha256(path)}\0".encode())
    return digest.hexdigest()
