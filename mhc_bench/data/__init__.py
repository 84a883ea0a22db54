"""Data pipeline: a corpus (Shakespeare, local files, a Hub dataset), split, tokenizer, token files.

Everything is cached by the config's fingerprint (:meth:`DataConfig.fingerprint`).

The public names load lazily so that ``mhc-bench data --help`` and code that
only needs :mod:`mhc_bench.data.corpus` do not import numpy or pydantic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mhc_bench.data.config import DataConfig
    from mhc_bench.data.prepare import PreparedData, prepare_data

__all__ = ["DataConfig", "PreparedData", "prepare_data"]
_HOMES = {"DataConfig": "mhc_bench.data.config", "PreparedData": "mhc_bench.data.prepare",
          "prepare_data": "mhc_bench.data.prepare"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
