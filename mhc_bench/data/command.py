"""``mhc-bench data``: prepare (or find in the cache) the token files of a data config.

``--config`` takes a cell YAML (its top-level ``data:`` mapping is used) or a
data YAML (the whole mapping is the data config); a cell without ``data:``
uses the defaults. ``--corpus``, ``--tokenizer`` and ``--vocab-size`` override
the file. A source that cannot be read (a Hub corpus offline, say) is reported
in one line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="CELL_OR_DATA.yaml",
                        help="YAML with a top-level 'data:' mapping, or a data config mapping")
    parser.add_argument("--corpus", help="override the corpus: shakespeare, a file or glob, hf:<org>/<name>")
    parser.add_argument("--tokenizer", help="override the tokenizer: bpe, char or hf:<org>/<repo>")
    parser.add_argument("--vocab-size", type=int, help="override the BPE vocabulary size")
    parser.add_argument("--root", type=Path, help="output root (default: <user cache>/prepared)")


def data_mapping(document: object, field_names: set[str]) -> dict:
    """The data settings inside a loaded YAML document (see the module docstring)."""
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ValueError("the config file must hold a YAML mapping")
    if "data" in document:
        section = document["data"] or {}
        if not isinstance(section, dict):
            raise ValueError("'data:' must be a mapping")
        return dict(section)
    if field_names & set(document):
        return dict(document)
    return {}


def run(args: argparse.Namespace) -> int:
    import json
    import time

    import yaml
    from pydantic import ValidationError

    from mhc_bench.data.config import DataConfig
    from mhc_bench.data.errors import DataSourceError
    from mhc_bench.data.prepare import prepare_data

    settings: dict = {}
    if args.config is not None:
        settings = data_mapping(yaml.safe_load(args.config.read_text()), set(DataConfig.model_fields))
    if args.corpus is not None:
        settings["corpus"] = args.corpus
    if args.tokenizer is not None:
        settings["tokenizer"] = args.tokenizer
    if args.vocab_size is not None:
        settings["vocab_size"] = args.vocab_size
    try:
        cfg = DataConfig(**settings)
    except ValidationError as err:
        print(f"invalid data config:\n{err}")
        return 2
    started = time.perf_counter()
    try:
        prepared = prepare_data(cfg, root=args.root)
    except DataSourceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - started
    meta = prepared.meta()
    print(prepared.dir)
    print(json.dumps({key: meta[key] for key in ("fingerprint", "tokenizer", "vocab_size", "tokens", "splits",
                                                  "tokenizer_sha256", "source_sha256", "mix")}, indent=2))
    print(f"ready in {seconds:.2f}s")
    return 0
