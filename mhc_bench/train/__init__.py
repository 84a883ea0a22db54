"""Training of one cell: config, Lightning module and data, probes, MLflow tracking, resume.

Public API: :class:`CellConfig`, :func:`load_cell_config`, :func:`cell_id`,
:func:`config_hash`, :func:`train_cell`. Names load lazily so that
``mhc-bench --help`` does not import torch or Lightning. A trained cell's files
(and loading its model back) are :mod:`mhc_bench.cellfolder`'s.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mhc_bench.cellconfig import CellConfig, ConfigError, cell_id, config_hash, load_cell_config
    from mhc_bench.train.runner import train_cell

__all__ = ["CellConfig", "ConfigError", "cell_id", "config_hash", "load_cell_config", "train_cell"]
_HOMES = {"CellConfig": "config", "ConfigError": "config", "cell_id": "config", "config_hash": "config",
          "load_cell_config": "config", "train_cell": "runner"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"mhc_bench.train.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
