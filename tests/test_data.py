"""Data pipeline on the small fixture corpus: split, tokenizers, cache, atomic builds, mixing, CLI."""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from mhc_bench.cli import main as cli_main
from mhc_bench.data import DataConfig, PreparedData, prepare_data
from mhc_bench.data.command import data_mapping
from mhc_bench.data.corpus import strip_gutenberg
from mhc_bench.data.prepare import is_complete
from mhc_bench.data.split import split_by_name, split_shakespeare
from mhc_bench.data.tokenizer import load_tokenizer

FIXTURE = Path(__file__).parent / "fixtures" / "corpus"
FILES = ("tokenizer.json", "train.bin", "val.bin", "test.bin")


def fixture_cfg(**overrides) -> DataConfig:
    return DataConfig(corpus=str(FIXTURE), **overrides)


def tokens(path: Path) -> np.ndarray:
    return np.asarray(np.memmap(path, dtype=np.uint16, mode="r"))


# Tests that mix with a fake generator pass eval_hashes=() (no evaluation items to compare against):
# the real ones need the BIG-bench sdist, and tests/test_data_sources.py covers the check itself.
def fake_generator(task: str, seed: int, n_items: int) -> list[str]:
    """Deterministic task-format items; the seed shows up in the text so seeds matter."""
    return [f"Question ({task} {seed % 997} #{i}): what is {i} plus {seed % 13}?\nAnswer: {i + seed % 13}"
            for i in range(n_items)]


def test_split_is_by_whole_file_and_fixed() -> None:
    names = sorted(p.stem for p in FIXTURE.glob("*.txt"))
    assert split_by_name(names) == {"train": names[:3], "val": [names[3]], "test": [names[4]]}
    assert split_by_name(list(reversed(names))) == split_by_name(names)
    many = [f"w{i:02d}" for i in range(40)]  # k = round(0.05 * 40) = 2 works per held-out split
    assert split_by_name(many) == {"train": many[:36], "val": many[36:38], "test": many[38:]}
    with pytest.raises(ValueError, match="at least 3"):
        split_by_name(["a", "b"])
    with pytest.raises(ValueError, match="macbeth"):
        split_shakespeare(["julius_caesar", "twelfth_night", "much_ado_about_nothing", "hamlet"])


def test_char_token_files_hold_whole_works(tmp_path: Path) -> None:
    prepared = prepare_data(fixture_cfg(tokenizer="char"), root=tmp_path)
    meta = prepared.meta()
    assert meta["splits"] == {"train": ["a_sonnets", "b_fable", "c_dialogue"], "val": ["d_sonnet"],
                              "test": ["e_prose"]}
    tok = load_tokenizer(prepared.tokenizer_path)
    assert (prepared.vocab_size, tok.eot_id) == (257, 256)
    val = tokens(prepared.val_bin)
    assert val[-1] == 256 and int((val == 256).sum()) == 1  # one work, one end-of-text
    assert tok.decode(val.tolist()) == (FIXTURE / "d_sonnet.txt").read_text().strip() + "\n"
    train = tokens(prepared.train_bin)
    assert int((train == 256).sum()) == 3
    assert {k: int(v) for k, v in meta["tokens"].items()} == {
        "train": train.size, "val": val.size, "test": tokens(prepared.test_bin).size}
    text = tok.decode(train.tolist())
    assert "THE MILLER AND THE CROW" in text and "Moral:" in text
    assert "Gutenberg" not in text and "fable10" not in text


def test_strip_gutenberg_handles_crlf_and_plain_text() -> None:
    wrapped = "Header\r\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\r\nBody line.\r\n" \
              "*** END OF THE PROJECT GUTENBERG EBOOK X ***\r\nLicence\r\n"
    assert strip_gutenberg(wrapped) == "Body line.\n"
    assert strip_gutenberg("\n\nJust verse.\n\n") == "Just verse.\n"


def test_bpe_build_is_byte_identical_and_round_trips(tmp_path: Path) -> None:
    cfg = fixture_cfg(vocab_size=320)
    first = prepare_data(cfg, root=tmp_path / "a")
    second = prepare_data(cfg, root=tmp_path / "b")
    assert first.fingerprint == second.fingerprint == cfg.fingerprint()
    for name in FILES:
        assert (first.dir / name).read_bytes() == (second.dir / name).read_bytes(), name
    tok = load_tokenizer(first.tokenizer_path)
    assert 257 < tok.vocab_size == first.vocab_size <= 320
    sample = "Shall I compare thee to a garden? Ünïcode ✓\n"
    assert tok.decode(tok.encode(sample)) == sample
    train = tokens(first.train_bin)
    assert train.max() < first.vocab_size and int((train == tok.eot_id).sum()) == 3
    meta = first.meta()
    assert meta["tokens"]["train"] < meta["chars"]["train"]  # merges happened
    assert meta["files_sha256"]["train.bin"] == hashlib.sha256(first.train_bin.read_bytes()).hexdigest()
    assert meta["tokenizer_sha256"] == hashlib.sha256(first.tokenizer_path.read_bytes()).hexdigest()


def test_bpe_is_trained_on_the_train_split_only(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("a_one", "b_two", "c_three"):
        shutil.copy(FIXTURE / "a_sonnets.txt", corpus / f"{name}.txt")
    (corpus / "d_val.txt").write_text("plain words\n")
    (corpus / "e_test.txt").write_text(" qqqjjjxxx" * 300 + "\n")  # would be one token if seen
    tok = load_tokenizer(prepare_data(DataConfig(corpus=str(corpus), vocab_size=1000),
                                      root=tmp_path / "out").tokenizer_path)
    assert len(tok.encode(" qqqjjjxxx")) >= 5


def test_second_call_reuses_the_cache(tmp_path: Path) -> None:
    cfg = fixture_cfg(vocab_size=300)
    first = prepare_data(cfg, root=tmp_path)
    stamps = {name: (first.dir / name).stat().st_mtime_ns for name in (*FILES, "meta.json")}
    again = prepare_data(fixture_cfg(vocab_size=300), root=tmp_path)
    assert again == first
    assert {name: (again.dir / name).stat().st_mtime_ns for name in stamps} == stamps
    assert [p.name for p in tmp_path.iterdir()] == [first.fingerprint]  # no temp dirs left


def test_interrupted_or_partial_builds_never_count_as_complete(tmp_path: Path) -> None:
    cfg = fixture_cfg(tokenizer="char", mix_weight=0.5)

    def crashing(task: str, seed: int, n_items: int) -> list[str]:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare_data(cfg, root=tmp_path, text_generator=crashing, eval_hashes=())
    assert list(tmp_path.iterdir()) == []  # neither the final nor a temp directory

    fingerprint = cfg.fingerprint()
    partial = tmp_path / fingerprint
    partial.mkdir()
    (partial / "train.bin").write_bytes(b"\0\0")
    assert not is_complete(partial, fingerprint)
    built = prepare_data(cfg, root=tmp_path, text_generator=fake_generator, eval_hashes=())
    assert built.dir == partial and is_complete(partial, fingerprint)

    with open(built.train_bin, "r+b") as handle:  # a truncated token file is caught by size
        handle.truncate(10)
    assert not is_complete(partial, fingerprint)


@pytest.mark.parametrize(("field", "value"), [
    ("vocab_size", 100), ("vocab_size", 70_000), ("mix_weight", 1.0), ("mix_weight", -0.1),
    ("tokenizer", "wordpiece"), ("mix_tasks", ["gsm", "poetry"]), ("corpus", "/no/such/corpus"),
    ("mix_seed", -1), ("vocab", 4096),
])
def test_bad_config_values_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        DataConfig(**{field: value})
    assert field in {str(part) for error in info.value.errors() for part in error["loc"]}


def test_fingerprint_tracks_only_what_changes_the_output(tmp_path: Path) -> None:
    base = fixture_cfg()
    assert base.fingerprint() == fixture_cfg().fingerprint()
    assert len(base.fingerprint()) == 16
    assert base.fingerprint() != fixture_cfg(vocab_size=512).fingerprint()
    char = fixture_cfg(tokenizer="char")
    assert char.fingerprint() == fixture_cfg(tokenizer="char", vocab_size=512).fingerprint()
    assert base.fingerprint() == fixture_cfg(mix_seed=7, mix_tasks=["gsm"]).fingerprint()
    assert fixture_cfg(mix_weight=0.1).fingerprint() != fixture_cfg(mix_weight=0.1, mix_seed=1).fingerprint()
    assert base.fingerprint() != DataConfig().fingerprint()

    copy = tmp_path / "corpus"
    shutil.copytree(FIXTURE, copy)
    assert DataConfig(corpus=str(copy)).fingerprint() == base.fingerprint()  # content, not path
    (copy / "e_prose.txt").write_text("Changed.\n")
    assert DataConfig(corpus=str(copy)).fingerprint() != base.fingerprint()


def test_mixing_changes_only_train_and_is_seeded(tmp_path: Path) -> None:
    plain = prepare_data(fixture_cfg(vocab_size=300), root=tmp_path / "plain")
    mixed = prepare_data(fixture_cfg(vocab_size=300, mix_weight=0.2), root=tmp_path / "mixed",
                         text_generator=fake_generator, eval_hashes=())
    assert mixed.fingerprint != plain.fingerprint
    for name in ("tokenizer.json", "val.bin", "test.bin"):
        assert (plain.dir / name).read_bytes() == (mixed.dir / name).read_bytes(), name
    base, train = plain.train_bin.read_bytes(), mixed.train_bin.read_bytes()
    assert train.startswith(base) and len(train) > len(base)
    meta = mixed.meta()
    fraction = meta["mix"]["tokens"] / meta["tokens"]["train"]
    assert 0.2 <= fraction < 0.25
    assert set(meta["mix"]["items"]) == {"gsm", "bbh", "mmlu"} and min(meta["mix"]["items"].values()) > 0
    tok = load_tokenizer(mixed.tokenizer_path)
    assert "Question (gsm" in tok.decode(tokens(mixed.train_bin)[len(base) // 2:].tolist())

    again = prepare_data(fixture_cfg(vocab_size=300, mix_weight=0.2), root=tmp_path / "again",
                         text_generator=fake_generator, eval_hashes=())
    assert again.train_bin.read_bytes() == train
    reseeded = prepare_data(fixture_cfg(vocab_size=300, mix_weight=0.2, mix_seed=1), root=tmp_path / "seed1",
                            text_generator=fake_generator, eval_hashes=())
    assert reseeded.train_bin.read_bytes() != train


def test_zero_mix_weight_is_plain_data_and_never_calls_the_generator(tmp_path: Path) -> None:
    def forbidden(task: str, seed: int, n_items: int) -> list[str]:
        raise AssertionError("generator called with mix_weight == 0")

    plain = prepare_data(fixture_cfg(tokenizer="char"), root=tmp_path / "a")
    zero = prepare_data(fixture_cfg(tokenizer="char", mix_weight=0.0, mix_seed=3), root=tmp_path / "b",
                        text_generator=forbidden)
    for name in FILES:
        assert (plain.dir / name).read_bytes() == (zero.dir / name).read_bytes(), name


def test_mixing_without_the_generators_module_fails_clearly(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mhc_bench.taskgen.generators", None)  # makes the import fail
    with pytest.raises(RuntimeError, match=r"mhc_bench\.taskgen\.generators"):
        prepare_data(fixture_cfg(tokenizer="char", mix_weight=0.1), root=tmp_path)
    assert list(tmp_path.glob("*")) == []


def test_cli_prepares_from_a_cell_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cell = tmp_path / "cell.yaml"
    cell.write_text(f"model: {{width: 8}}\ndata:\n  corpus: {FIXTURE}\n  tokenizer: bpe\n")
    root = tmp_path / "out"
    assert cli_main(["data", "--config", str(cell), "--vocab-size", "300", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    prepared = PreparedData.from_dir(root / fixture_cfg(vocab_size=300).fingerprint())
    assert str(prepared.dir) in out and '"vocab_size"' in out
    assert cli_main(["data", "--config", str(cell), "--vocab-size", "12", "--root", str(root)]) == 2
    assert "vocab_size" in capsys.readouterr().out


def test_data_mapping_reads_cell_and_data_files() -> None:
    fields = set(DataConfig.model_fields)
    assert data_mapping({"model": {}, "data": {"tokenizer": "char"}}, fields) == {"tokenizer": "char"}
    assert data_mapping({"tokenizer": "char", "vocab_size": 300}, fields) == {"tokenizer": "char",
                                                                              "vocab_size": 300}
    assert data_mapping({"model": {}, "train": {}}, fields) == {}
    assert data_mapping(None, fields) == {}
    with pytest.raises(ValueError, match="mapping"):
        data_mapping(["data"], fields)
