"""Bring-your-own data, offline: local Parquet / JSON Lines through ``datasets``, token budgets, resume,
the Hub source failing fast, pretrained tokenizers, evaluation-item contamination, epochs in training.

The fixtures are generated here (a few hundred short documents), so nothing binary is committed.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from mhc_bench.cli import main as cli_main
from mhc_bench.data import DataConfig, prepare_data
from mhc_bench.data import documents as documents_mod
from mhc_bench.data import stream as stream_mod
from mhc_bench.data.epochs import DataRepeatWarning
from mhc_bench.data.errors import DataSourceError
from mhc_bench.data.hub import HubOfflineError
from mhc_bench.data.tokenizer import load_tokenizer
from mhc_bench.taskgen import generators
from mhc_bench.taskgen.contamination import ContaminationError, evaluation_prompt_hashes, prompt_of

FIXTURE = Path(__file__).parent / "fixtures" / "corpus"
HUB = {"corpus": "hf:HuggingFaceFW/fineweb-edu", "hf_config": "sample-10BT", "train_tokens": 10_000,
       "val_tokens": 1_000}


def _documents(n: int = 240) -> list[str]:
    """Distinct short documents of varying length (words of the fixture corpus), a few empty rows."""
    words = " ".join(p.read_text() for p in sorted(FIXTURE.glob("*.txt"))).split()
    docs = []
    for i in range(n):
        start = (i * 37) % (len(words) - 60)
        docs.append(f"Document {i}. " + " ".join(words[start:start + 10 + i % 40]))
    docs[5] = docs[77] = ""  # empty rows are skipped, not documents
    return docs


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same rows as two Parquet files, as two JSON Lines files, and as one text file per document."""
    root = tmp_path_factory.mktemp("web")
    docs = _documents()
    halves = (docs[:120], docs[120:])
    for kind in ("parquet", "jsonl", "txt"):
        (root / kind).mkdir()
    for k, half in enumerate(halves):
        rows = [{"body": text, "id": i} for i, text in enumerate(half)]
        pq.write_table(pa.Table.from_pylist(rows), root / "parquet" / f"part-{k}.parquet", row_group_size=16)
        (root / "jsonl" / f"part-{k}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for i, text in enumerate(docs[:40]):
        (root / "txt" / f"doc-{i:03d}.txt").write_text(text)
    return {kind: root / kind for kind in ("parquet", "jsonl", "txt")}


def rows_cfg(web: dict[str, Path], kind: str = "parquet", **overrides) -> DataConfig:
    settings = {"corpus": str(web[kind] / f"*.{kind}"), "text_field": "body", "tokenizer": "char",
                "holdout_fraction": 0.1, **overrides}
    return DataConfig(**settings)


def tokens(path: Path) -> np.ndarray:
    return np.fromfile(path, dtype="<u2")


def split_documents(path: Path, eot: int) -> list[bytes]:
    """The documents of a byte-tokenized file (each ends in EOT; a cut last one may not)."""
    data = tokens(path)
    cuts = np.flatnonzero(data == eot)
    pieces = np.split(data, cuts + 1)
    return [bytes(p[p != eot].astype(np.uint8)) for p in pieces if p.size]


# --- the default keeps its identity --------------------------------------------------------------

def test_shakespeare_fingerprint_is_unchanged_by_the_new_fields() -> None:
    """The committed quick results were trained on 73fda8ad681205ad; smoke's BPE-512 on c29d7d7a993baf21."""
    assert DataConfig().fingerprint() == "73fda8ad681205ad"
    assert DataConfig(vocab_size=512).fingerprint() == "c29d7d7a993baf21"
    explicit = DataConfig(text_field="text", hf_split="train", holdout_fraction=0.01, max_epochs=None,
                          train_tokens=None, val_tokens=None, mix_weight=0.0)
    assert explicit.fingerprint() == "73fda8ad681205ad"
    assert DataConfig(max_epochs=1).fingerprint() == "73fda8ad681205ad"  # a warning threshold, not data
    assert DataConfig(train_tokens=1_000_000).fingerprint() != "73fda8ad681205ad"


def test_quick_profile_keeps_the_committed_cell_ids() -> None:
    from mhc_bench.paths import PROJECT_ROOT
    from mhc_bench.workflow.grid import profile_cells

    committed = PROJECT_ROOT / "results" / "quick" / "cells"
    if not committed.is_dir():
        pytest.skip("no committed quick results in this checkout")
    assert sorted(profile_cells("quick")) == sorted(p.name for p in committed.iterdir() if p.is_dir())


def test_hub_identity_is_computed_offline_and_names_the_coordinates() -> None:
    base = DataConfig(**HUB)
    assert base.identity()["corpus"] == {"kind": "hub", "name": "HuggingFaceFW/fineweb-edu",
                                         "config": "sample-10BT", "split": "train", "revision": None,
                                         "text_field": "text", "reader": 1, "holdout_fraction": 0.01}
    assert DataConfig(**{**HUB, "hf_revision": "abc123"}).fingerprint() != base.fingerprint()
    assert DataConfig(**{**HUB, "hf_config": "sample-100BT"}).fingerprint() != base.fingerprint()


@pytest.mark.parametrize(("settings", "message"), [
    ({"corpus": "hf:bad name"}, "not a Hub dataset name"),
    ({"corpus": "hf:org/data"}, "set train_tokens and val_tokens"),
    ({"hf_config": "sample-10BT"}, "only used with a Hub corpus"),
    ({"corpus": str(FIXTURE / "*.docx")}, "nothing matches"),
    ({"corpus": str(FIXTURE / "*.txt"), "train_tokens": 0}, "train_tokens"),
    ({"tokenizer": "gpt2"}, "tokenizer"),
    ({"holdout_fraction": 0.5}, "holdout_fraction"),
    ({"train_tokens": 10, "mix_weight": 0.99}, "too small"),
])
def test_bad_source_settings_fail_at_validation(settings: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DataConfig(**settings)


# --- local files through datasets ----------------------------------------------------------------

def test_parquet_and_jsonl_give_the_same_token_files(web: dict[str, Path], tmp_path: Path) -> None:
    parquet = prepare_data(rows_cfg(web, "parquet"), root=tmp_path)
    jsonl = prepare_data(rows_cfg(web, "jsonl"), root=tmp_path)
    assert parquet.fingerprint != jsonl.fingerprint  # different files, same rows
    for name in ("train.bin", "val.bin", "test.bin"):
        assert (parquet.dir / name).read_bytes() == (jsonl.dir / name).read_bytes(), name
    meta = parquet.meta()
    assert meta["source"]["names"] == ["part-0.parquet", "part-1.parquet"]
    assert meta["documents_read"] == 240 and meta["skipped_empty"] == 2
    assert sum(s["documents"] for s in meta["splits"].values()) == 238
    assert meta["splits"]["val"]["documents"] > 5 and meta["splits"]["test"]["documents"] > 5


def test_splits_are_disjoint_by_document_and_cover_the_corpus(web: dict[str, Path], tmp_path: Path) -> None:
    prepared = prepare_data(rows_cfg(web), root=tmp_path)
    eot = load_tokenizer(prepared.tokenizer_path).eot_id
    assert eot is not None
    sides = {split: set(split_documents(prepared.dir / f"{split}.bin", eot))
             for split in ("train", "val", "test")}
    assert not sides["train"] & sides["val"] and not sides["train"] & sides["test"]
    assert not sides["val"] & sides["test"]
    assert set().union(*sides.values()) == {d.encode() for d in _documents() if d}


def test_text_files_are_one_document_each(web: dict[str, Path], tmp_path: Path) -> None:
    prepared = prepare_data(rows_cfg(web, "txt", holdout_fraction=0.2), root=tmp_path)
    meta = prepared.meta()
    assert meta["corpus"]["format"] == "text" and meta["corpus"]["text_field"] is None
    assert sum(s["documents"] for s in meta["splits"].values()) == 40 - 1  # doc-005 is empty


def test_fingerprint_follows_content_not_location(web: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in web["jsonl"].iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    moved = DataConfig(corpus=str(copy / "*.jsonl"), text_field="body", tokenizer="char",
                       holdout_fraction=0.1)
    before = moved.fingerprint()
    assert before == rows_cfg(web, "jsonl").fingerprint()
    with open(copy / "part-1.jsonl", "a") as handle:
        handle.write(json.dumps({"body": "one more row", "id": -1}) + "\n")
    assert moved.fingerprint() != before  # the memo of file hashes notices the change


def test_missing_text_field_is_one_clear_error(web: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match=r"no field 'text'.*body.*text_field"):
        prepare_data(rows_cfg(web, text_field="text"), root=tmp_path)


def test_bpe_is_fitted_on_train_side_documents(web: dict[str, Path], tmp_path: Path) -> None:
    prepared = prepare_data(rows_cfg(web, tokenizer="bpe", vocab_size=300), root=tmp_path)
    tok = load_tokenizer(prepared.tokenizer_path)
    assert 257 < tok.vocab_size <= 300 and tok.eot_id is not None
    assert tokens(prepared.train_bin).max() < tok.vocab_size
    sample = "Document 12. Shall I compare thee"
    assert tok.decode(tok.encode(sample)) == sample


# --- budgets --------------------------------------------------------------------------------------

def test_token_budgets_are_honoured_exactly(web: dict[str, Path], tmp_path: Path) -> None:
    prepared = prepare_data(rows_cfg(web, train_tokens=5_001, val_tokens=333), root=tmp_path)
    sizes = {split: tokens(prepared.dir / f"{split}.bin").size for split in ("train", "val", "test")}
    assert sizes == {"train": 5_001, "val": 333, "test": 333}
    assert prepared.meta()["tokens"] == sizes and prepared.train_tokens() == 5_001
    # the budgeted files are prefixes of the full ones: the first N tokens, in the source's order
    full = prepare_data(rows_cfg(web), root=tmp_path)
    for split, size in sizes.items():
        head = (full.dir / f"{split}.bin").read_bytes()[: 2 * size]
        assert head == (prepared.dir / f"{split}.bin").read_bytes(), split


def test_budget_with_mixing_is_exact_and_mix_is_inside_it(web: dict[str, Path], tmp_path: Path) -> None:
    def fake(task: str, seed: int, n_items: int) -> list[str]:
        return [f"Question: {task} {seed % 101} item {i}?\nAnswer: {i}" for i in range(n_items)]

    cfg = rows_cfg(web, train_tokens=6_000, val_tokens=300, mix_weight=0.25)
    prepared = prepare_data(cfg, root=tmp_path, text_generator=fake, eval_hashes=())
    meta = prepared.meta()
    assert tokens(prepared.train_bin).size == 6_000 == meta["tokens"]["train"]
    assert meta["mix"]["tokens"] == 1_500 and meta["corpus_train_tokens"] == 4_500


def test_a_budget_the_source_cannot_fill_fails_clearly(web: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match=r"ran out after 240 documents: train has \d+ of 10000000"):
        prepare_data(rows_cfg(web, train_tokens=10_000_000, val_tokens=10), root=tmp_path)


def test_whole_work_corpus_takes_budgets_too(tmp_path: Path) -> None:
    cfg = DataConfig(corpus=str(FIXTURE), tokenizer="char", train_tokens=1_000, val_tokens=99)
    prepared = prepare_data(cfg, root=tmp_path)
    assert [tokens(prepared.dir / f"{s}.bin").size for s in ("train", "val", "test")] == [1_000, 99, 99]
    with pytest.raises(DataSourceError, match="fewer than the 5000 asked"):
        prepare_data(DataConfig(corpus=str(FIXTURE), tokenizer="char", val_tokens=5_000), root=tmp_path)


# --- resume ---------------------------------------------------------------------------------------

def test_interrupted_tokenization_resumes_to_byte_identical_files(web: dict[str, Path], tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = rows_cfg(web, tokenizer="bpe", vocab_size=300, train_tokens=4_000, val_tokens=400)
    monkeypatch.setattr(stream_mod, "BATCH_DOCS", 8)
    monkeypatch.setattr(stream_mod, "CHECKPOINT_TOKENS", 500)
    reference = prepare_data(cfg, root=tmp_path / "reference")

    real_checkpoint = stream_mod._checkpoint
    calls = {"n": 0}

    def interrupting(*args, **kwargs) -> None:
        real_checkpoint(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed right after the third checkpoint

    monkeypatch.setattr(stream_mod, "_checkpoint", interrupting)
    with pytest.raises(KeyboardInterrupt):
        prepare_data(cfg, root=tmp_path / "resumed")
    partial = tmp_path / "resumed" / f".partial-{cfg.fingerprint()}"
    assert (partial / "progress.json").is_file() and not (tmp_path / "resumed" / cfg.fingerprint()).exists()
    with open(partial / "train.bin", "ab") as handle:
        handle.write(b"\x07\x00" * 50)  # tokens written after the last checkpoint are dropped on resume

    monkeypatch.setattr(stream_mod, "_checkpoint", real_checkpoint)
    read = {"n": 0}
    real_texts = stream_mod.texts

    def counting(*args, **kwargs):
        for text in real_texts(*args, **kwargs):
            read["n"] += 1
            yield text

    monkeypatch.setattr(stream_mod, "texts", counting)
    resumed = prepare_data(cfg, root=tmp_path / "resumed")
    for name in ("tokenizer.json", "train.bin", "val.bin", "test.bin"):
        assert (resumed.dir / name).read_bytes() == (reference.dir / name).read_bytes(), name
    assert 0 < read["n"] < reference.meta()["documents_read"]  # continued, not restarted
    assert {k: v for k, v in resumed.meta().items() if k != "source"} == \
        {k: v for k, v in reference.meta().items() if k != "source"}
    assert not partial.exists() and not (resumed.dir / "progress.json").exists()


# --- the Hub and pretrained tokenizers, offline ---------------------------------------------------

def test_hub_source_fails_fast_offline_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import datasets

    def never(*args, **kwargs):
        raise AssertionError("datasets.load_dataset must not be reached offline")

    monkeypatch.setattr(datasets, "load_dataset", never)
    cfg = DataConfig(**HUB)
    with pytest.raises(HubOfflineError) as info:
        prepare_data(cfg, root=tmp_path / "root")
    message = str(info.value)
    assert "\n" not in message and "hf:HuggingFaceFW/fineweb-edu" in message and "sample-10BT" in message
    assert "HF_HUB_OFFLINE=1" in message or "HF_DATASETS_OFFLINE=1" in message
    assert not (tmp_path / "root").exists()  # nothing was built, not even the cache folder


def test_hub_source_online_streams_the_named_dataset(web: dict[str, Path], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """With the Hub allowed, the coordinates reach datasets.load_dataset (here served from local Parquet)."""
    import datasets

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    real_load = datasets.load_dataset
    calls: list[tuple] = []

    def fake_hub(name, config=None, **kwargs):
        calls.append((name, config, kwargs))
        return real_load("parquet", data_files=sorted(str(p) for p in web["parquet"].glob("*.parquet")),
                         split="train", streaming=True)

    monkeypatch.setattr(datasets, "load_dataset", fake_hub)
    monkeypatch.setattr(documents_mod.RowSource, "resolved_revision", lambda self: "f" * 40)
    cfg = DataConfig(**{**HUB, "text_field": "body", "tokenizer": "char", "holdout_fraction": 0.1,
                        "train_tokens": 4_000, "val_tokens": 200, "hf_revision": "v1"})
    prepared = prepare_data(cfg, root=tmp_path)
    assert calls and all(c == ("HuggingFaceFW/fineweb-edu", "sample-10BT",
                               {"split": "train", "revision": "v1", "streaming": True}) for c in calls)
    meta = prepared.meta()
    assert meta["tokens"] == {"train": 4_000, "val": 200, "test": 200}
    described = "corpus hf:HuggingFaceFW/fineweb-edu (train split, config sample-10BT)"
    assert meta["source"] == {"description": described, "kind": "hub", "resolved_revision": "f" * 40}
    local = prepare_data(rows_cfg(web, train_tokens=4_000, val_tokens=200), root=tmp_path)
    assert prepared.train_bin.read_bytes() == local.train_bin.read_bytes()  # same rows, same tokens


def test_data_command_reports_the_offline_hub_in_one_line(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    data_yaml = tmp_path / "data.yaml"
    data_yaml.write_text("\n".join(f"{k}: {v}" for k, v in HUB.items()) + "\n")
    assert cli_main(["data", "--config", str(data_yaml), "--root", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "fineweb-edu" in err and "OFFLINE=1" in err


def test_pretrained_tokenizer_offline_fails_clearly_unless_cached(
        web: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(HubOfflineError, match=r"^tokenizer hf:openai-community/gpt2 .*HF_HUB_OFFLINE=1"):
        prepare_data(rows_cfg(web, tokenizer="hf:openai-community/gpt2"), root=tmp_path / "a")

    # A GPT-2-sized vocabulary in the local HF cache: ids above 32767 survive the uint16 files.
    _cache_tokenizer(tmp_path / "hub", "test-org/wide", vocab=50_257)
    prepared = prepare_data(rows_cfg(web, tokenizer="hf:test-org/wide"), root=tmp_path / "b")
    tok = load_tokenizer(prepared.tokenizer_path)
    assert prepared.vocab_size == tok.vocab_size == 50_258 and tok.eot_id == 50_256
    train = tokens(prepared.train_bin)
    assert train.max() == 50_257
    assert (train == 50_256).sum() == prepared.meta()["splits"]["train"]["documents"]

    _cache_tokenizer(tmp_path / "hub", "test-org/huge", vocab=70_000)
    with pytest.raises(DataSourceError, match="70001 ids"):
        prepare_data(rows_cfg(web, tokenizer="hf:test-org/huge"), root=tmp_path / "c")


def _cache_tokenizer(cache: Path, repo: str, vocab: int) -> None:
    """A word-level tokenizer laid out as huggingface_hub caches a downloaded repo."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = {f"w{i}": i for i in range(vocab - 1)}
    words["<|endoftext|>"] = vocab - 1
    words["[UNK]"] = vocab
    tok = Tokenizer(models.WordLevel(words, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(["<|endoftext|>"])
    folder = cache / f"models--{repo.replace('/', '--')}"
    commit = "0" * 40
    (folder / "snapshots" / commit).mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(commit)
    tok.save(str(folder / "snapshots" / commit / "tokenizer.json"))


# --- contamination ------------------------------------------------------------------------------

def test_prompt_ignores_the_answer_and_whitespace() -> None:
    assert prompt_of("Question: What is 2 + 2?\nAnswer: 4") == "Question: What is 2 + 2?"
    assert prompt_of("Question:  What is 2 + 2?\n\nAnswer: 5") == "Question: What is 2 + 2?"
    assert prompt_of("Q: not ( True ) is\nA: False") == "Q: not ( True ) is"
    assert prompt_of("Which?\nA. x\nB. y\nAnswer: A") == "Which?\nA. x\nB. y".replace("\n", " ")


def test_a_planted_evaluation_item_is_caught(tmp_path: Path) -> None:
    _, test = generators.eval_split("gsm", "gsm", 50)
    # an evaluated item with a wrong answer: same question, so the same prompt hash
    planted = generators.format_item("gsm", test[17]).replace("####", "#### 0 or")

    def leaky(task: str, seed: int, n_items: int) -> list[str]:
        items = generators.training_text(task, seed, n_items)
        return [*items[:3], planted, *items[3:]]

    cfg = DataConfig(corpus=str(FIXTURE), tokenizer="char", mix_weight=0.2, mix_tasks=["gsm"])
    with pytest.raises(ContaminationError, match=r"1 document\(s\) repeat an evaluation item"):
        prepare_data(cfg, root=tmp_path, text_generator=leaky)
    assert not list(tmp_path.glob("[!.]*"))  # nothing finished

    clean = prepare_data(cfg, root=tmp_path)  # the real generator, checked against the same hashes
    assert clean.meta()["mix"]["checked_against"] == len(evaluation_prompt_hashes(("gsm",)))
    assert clean.meta()["mix"]["checked_against"] >= 1000


def test_real_training_text_never_repeats_an_evaluation_item() -> None:
    hashes = evaluation_prompt_hashes(tuple(generators.FAMILIES))
    from mhc_bench.taskgen.contamination import find_contaminated

    for family in generators.FAMILIES:
        assert find_contaminated(generators.training_text(family, seed=3, n_items=2_000), hashes) == []


# --- training on a local corpus -----------------------------------------------------------------

def test_toy_cell_trains_on_parquet_and_reports_epochs(web: dict[str, Path], tmp_path: Path) -> None:
    from mhc_bench.cellconfig import parse_cell_config
    from mhc_bench.train.runner import train_cell

    data = rows_cfg(web, train_tokens=3_000, val_tokens=300, max_epochs=1).model_dump()
    cfg = parse_cell_config({
        "model": {"d_model": 16, "n_layer": 1, "n_head": 2, "seq_len": 16, "mixing": "mhc", "n_streams": 2},
        "data": data,
        "train": {"steps": 12, "batch_size": 4, "warmup_steps": 2, "probe_every": 6, "val_every": 6,
                  "val_batches": 1, "ckpt_every": 6, "num_threads": 1},
        "tracking": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
    })
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = train_cell(cfg, tmp_path / "cell", data_root=tmp_path / "data")
    assert metrics["status"] == "completed" and metrics["tokens_seen"] == 12 * 4 * 16
    assert metrics["epochs_seen"] == pytest.approx(12 * 4 * 16 / 3_000)
    assert not [w for w in caught if issubclass(w.category, DataRepeatWarning)]

    repeating = parse_cell_config({**cfg.model_dump(mode="json", exclude={"resolved"}),
                                   "data": {**data, "max_epochs": 0.1}})
    expected = r"read its 3,000 training tokens 0\.26 times.*max_epochs = 0\.1"
    with pytest.warns(DataRepeatWarning, match=expected):
        train_cell(repeating, tmp_path / "cell2", data_root=tmp_path / "data")
