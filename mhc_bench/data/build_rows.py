"""Build the token files of a row source (local files, a Hub dataset) in a folder that survives interruption.

Steps, each resumable: the tokenizer (pretrained, bytes, or a BPE fitted on the
first train-side documents) is saved first and reused on a rerun; the corpus
is tokenized by :func:`mhc_bench.data.stream.tokenize_documents` (checkpointed);
the mix is regenerated from scratch after the corpus tokens (it is cheap and
deterministic); ``meta.json`` comes last. The caller holds a lock on the folder
and renames it into place when this returns.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from mhc_bench.data import outputs
from mhc_bench.data.config import PIPELINE_VERSION, DataConfig
from mhc_bench.data.documents import RowSource
from mhc_bench.data.mixing import TextGenerator, mix_for
from mhc_bench.data.stream import BPE_SAMPLE_CHARS, bpe_sample, tokenize_documents
from mhc_bench.data.tokenizer import ByteTokenizer, TextTokenizer, load_tokenizer, train_bpe
from mhc_bench.fetch import sha256_file

MAX_LISTED_FILES = 1000  # meta.json names at most this many source files (their hash covers all)


def row_source(cfg: DataConfig) -> RowSource:
    return RowSource(cfg.corpus, cfg.text_field, cfg.hf_config, cfg.hf_split, cfg.hf_revision)


def _tokenizer(cfg: DataConfig, source: RowSource, folder: Path,
               pretrained: TextTokenizer | None) -> TextTokenizer:
    """The saved tokenizer of an interrupted build, else a new one (saved atomically before use)."""
    path = folder / outputs.TOKENIZER
    if path.is_file():
        return load_tokenizer(path)
    if pretrained is not None:
        tokenizer: TextTokenizer = pretrained
    elif cfg.tokenizer == "char":
        tokenizer = ByteTokenizer()
    else:
        tokenizer = train_bpe(bpe_sample(source, cfg.holdout_fraction), cfg.vocab_size)
    tmp = folder / f".{outputs.TOKENIZER}.tmp"
    tokenizer.save(tmp)
    tmp.replace(path)
    return tokenizer


def _source_record(cfg: DataConfig, source: RowSource) -> dict:
    record: dict = {"description": source.describe(), "kind": source.kind}
    if source.kind == "files":
        from mhc_bench.data.sources import resolve_files

        _, names = resolve_files(cfg.corpus)
        record.update(files=len(names), names=names[:MAX_LISTED_FILES])
    else:
        record.update(resolved_revision=source.resolved_revision())
    return record


def build_rows(cfg: DataConfig, fingerprint: str, folder: Path, pretrained: TextTokenizer | None,
               generator: TextGenerator | None, forbidden: Collection[str]) -> None:
    """Fill ``folder`` (possibly holding an interrupted build of the same fingerprint); ``meta.json`` last."""
    source = row_source(cfg)
    tokenizer = _tokenizer(cfg, source, folder, pretrained)
    budgets = cfg.split_budgets()
    state = tokenize_documents(source, tokenizer, budgets, folder, cfg.holdout_fraction)

    corpus_train_tokens = state.tokens["train"]
    train_bin = folder / "train.bin"
    with open(train_bin, "r+b") as handle:  # drop a mix appended by an interrupted run
        handle.truncate(2 * corpus_train_tokens)
    mix_info: dict = {"weight": cfg.mix_weight, "tokens": 0}
    if cfg.mix_weight > 0:
        assert generator is not None
        extra, info = mix_for(cfg, tokenizer, corpus_train_tokens, generator, forbidden)
        outputs.append_tokens(train_bin, extra)
        mix_info.update(info)

    identity = cfg.identity()
    tokens = dict(state.tokens, train=corpus_train_tokens + mix_info["tokens"])
    outputs.write_meta(folder, {
        "fingerprint": fingerprint,
        "pipeline_version": PIPELINE_VERSION,
        "config": cfg.model_dump(),
        "corpus": identity["corpus"],
        "source_sha256": identity["corpus"].get("sha256"),
        "source": _source_record(cfg, source),
        "tokenizer": cfg.tokenizer,
        "vocab_size": tokenizer.vocab_size,
        "eot_id": tokenizer.eot_id,
        "tokenizer_sha256": sha256_file(folder / outputs.TOKENIZER),
        "tokenizers_version": outputs.tokenizers_version(cfg.tokenizer),
        "bpe_sample_chars": BPE_SAMPLE_CHARS if cfg.tokenizer == "bpe" else None,
        "dtype": "uint16",
        "splits": {split: {"documents": state.documents[split], "order_sha256": state.chains[split]}
                   for split in state.documents},
        "documents_read": state.documents_read,
        "skipped_empty": state.skipped_empty,
        "chars": state.chars,
        "tokens": tokens,
        "budgets": budgets,
        "corpus_train_tokens": corpus_train_tokens,
        "mix": mix_info,
        "files_sha256": outputs.files_sha256(folder),
    })
