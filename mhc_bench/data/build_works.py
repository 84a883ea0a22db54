"""Build the token files of a whole-work corpus (Shakespeare, a directory of ``*.txt``) in one pass.

These corpora are small (Shakespeare is ~1.3 M BPE tokens), so everything is
held in memory and written at once; :func:`mhc_bench.data.prepare.prepare_data`
builds into a temporary folder and renames it into place. The split is by whole
work (:mod:`mhc_bench.data.split`). Token budgets, when set, keep the first
``budget`` tokens of a split and fail if it is shorter; without budgets the
output is what it always was, so the default data keeps its fingerprint.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import numpy as np

from mhc_bench.data import corpus as corpus_mod
from mhc_bench.data import outputs
from mhc_bench.data.config import PIPELINE_VERSION, DataConfig
from mhc_bench.data.errors import DataSourceError
from mhc_bench.data.mixing import TextGenerator, mix_for
from mhc_bench.data.split import SPLITS, split_by_name, split_shakespeare
from mhc_bench.data.tokenizer import ByteTokenizer, TextTokenizer, train_bpe


def _encode_works(tokenizer: TextTokenizer, works: dict[str, str], names: list[str]) -> list[int]:
    ids: list[int] = []
    for name in names:
        ids.extend(tokenizer.encode(works[name]))
        if tokenizer.eot_id is not None:
            ids.append(tokenizer.eot_id)
    return ids


def _apply_budgets(cfg: DataConfig, ids: dict[str, list[int]]) -> None:
    for split, budget in cfg.split_budgets().items():
        if budget is None:
            continue
        if len(ids[split]) < budget:
            asked = "val_tokens" if split != "train" else "train_tokens"
            raise DataSourceError(f"corpus {cfg.corpus}: the {split} split has {len(ids[split])} tokens, "
                                  f"fewer than the {budget} asked; lower data.{asked}")
        del ids[split][budget:]


def build_works(cfg: DataConfig, fingerprint: str, out: Path, pretrained: TextTokenizer | None,
                generator: TextGenerator | None, forbidden: Collection[str]) -> None:
    """Write tokenizer, token files and (last) ``meta.json`` into the empty folder ``out``."""
    works = corpus_mod.load_corpus(cfg.corpus)
    shakespeare = cfg.corpus == corpus_mod.SHAKESPEARE
    splits = split_shakespeare(list(works)) if shakespeare else split_by_name(list(works))

    if pretrained is not None:
        tokenizer: TextTokenizer = pretrained
    elif cfg.tokenizer == "char":
        tokenizer = ByteTokenizer()
    else:
        tokenizer = train_bpe((works[name] for name in splits["train"]), cfg.vocab_size)
    tokenizer.save(out / outputs.TOKENIZER)

    ids = {split: _encode_works(tokenizer, works, splits[split]) for split in SPLITS}
    _apply_budgets(cfg, ids)
    mix_info: dict = {"weight": cfg.mix_weight, "tokens": 0}
    corpus_train_tokens = len(ids["train"])
    if cfg.mix_weight > 0:
        assert generator is not None
        extra, info = mix_for(cfg, tokenizer, corpus_train_tokens, generator, forbidden)
        ids["train"].extend(extra.tolist())
        mix_info.update(info)

    for split in SPLITS:
        outputs.write_tokens(out / f"{split}.bin", np.asarray(ids[split], dtype=np.int64))
    identity = cfg.identity()
    outputs.write_meta(out, {
        "fingerprint": fingerprint,
        "pipeline_version": PIPELINE_VERSION,
        "config": cfg.model_dump(),
        "corpus": identity["corpus"],
        "source_sha256": identity["corpus"]["sha256"],
        "tokenizer": cfg.tokenizer,
        "vocab_size": tokenizer.vocab_size,
        "eot_id": tokenizer.eot_id,
        "tokenizer_sha256": outputs.sha256_file(out / outputs.TOKENIZER),
        "tokenizers_version": outputs.tokenizers_version(cfg.tokenizer),
        "dtype": "uint16",
        "splits": splits,
        "chars": {split: sum(len(works[name]) for name in splits[split]) for split in SPLITS},
        "tokens": {split: len(ids[split]) for split in SPLITS},
        "budgets": cfg.split_budgets(),
        "corpus_train_tokens": corpus_train_tokens,
        "mix": mix_info,
        "files_sha256": outputs.files_sha256(out),
    })
