"""Expand a profile's declared grid into training cells.

A profile (``workflows/config/<name>.yaml``) declares blocks of a grid, each
the product of its lists (variant x n x scale x seed x maps x lr); the union
of blocks minus the ``exclude`` rows is the grid. The baseline exists only at
n = 1 and with every map "on" (it has none), so baseline rows are folded onto
``n=1, maps=all`` and de-duplicated.

Why not ``snakemake.utils.Paramspace`` patterns: the cell id is the one the
trainer derives from the resolved config (readable part + config hash, see
``mhc_bench.train.config.cell_id``), so the Snakefile maps ids to configs with
a lookup table and constrains the ``{cell}`` wildcard to the known ids. The
grid itself is still a categorical/integer DataFrame, as Paramspace wants.
"""

from __future__ import annotations

import copy
import itertools
import os
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from mhc_bench.paths import PROJECT_ROOT

SCHEMA = PROJECT_ROOT / "workflows" / "schemas" / "profile.schema.yaml"
PROFILE_DIR = PROJECT_ROOT / "workflows" / "config"
GRID_COLUMNS = ("variant", "n", "scale", "seed", "maps", "lr")


class ProfileError(ValueError):
    """A profile that fails validation; the message names the offending key."""


def profile_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        return path
    return PROFILE_DIR / f"{name_or_path}.yaml"


def validate_profile(config: dict[str, Any]) -> dict[str, Any]:
    """Validate against the schema (filling defaults) and cross-check the grid's names."""
    from snakemake.utils import validate

    config = copy.deepcopy(config)
    try:
        validate(config, str(SCHEMA), set_default=True)
    except Exception as err:  # snakemake wraps jsonschema's error; keep its message (it names the key)
        raise ProfileError(f"profile {config.get('profile', '?')!r} is invalid: {err}") from None
    for block_no, block in enumerate(config["grid"]):
        for column, table in (("scale", "scales"), ("maps", "map_sets"), ("lr", "lrs")):
            for value in block[column]:
                if value not in config[table]:
                    raise ProfileError(
                        f"grid[{block_no}].{column}: {value!r} is not defined under '{table}' "
                        f"(known: {sorted(config[table])})"
                    )
    return config


def load_profile(name_or_path: str | Path) -> dict[str, Any]:
    path = profile_path(name_or_path)
    if not path.exists():
        known = sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))
        raise ProfileError(f"no profile {str(name_or_path)!r} (known: {known})")
    return validate_profile(yaml.safe_load(path.read_text()))


def expand_grid(config: dict[str, Any]) -> pd.DataFrame:
    """The grid as a DataFrame with columns ``GRID_COLUMNS``, one row per cell, stable order."""
    rows = []
    for block in config["grid"]:
        for values in itertools.product(*(block[c] for c in GRID_COLUMNS)):
            row = dict(zip(GRID_COLUMNS, values, strict=True))
            if row["variant"] == "baseline":
                row["n"], row["maps"] = 1, "all" if "all" in config["map_sets"] else row["maps"]
            if any(all(row[k] == v for k, v in ex.items()) for ex in config["exclude"]):
                continue
            rows.append(row)
    frame = pd.DataFrame(rows, columns=list(GRID_COLUMNS)).drop_duplicates(ignore_index=True)
    return frame.astype({"n": int, "seed": int})


def results_root(config: dict[str, Any]) -> Path:
    """``<results_dir>/<profile>``, relative to the working directory (Snakemake's workdir)."""
    return Path(config["results_dir"]) / config["profile"]


def tracking_uri(config: dict[str, Any]) -> str:
    """The profile's MLflow store: ``MLFLOW_TRACKING_URI``, the profile's key, or its own SQLite file."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return config["tracking_uri"] or f"sqlite:///{(results_root(config) / 'mlflow.db').resolve()}"


def cell_config(config: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """The resolved training config of one grid row (the YAML ``mhc-bench train`` reads)."""
    scale = dict(config["scales"][row["scale"]])
    train = dict(config["train"])
    for key in ("batch_size", "steps"):
        if key in scale:
            train[key] = scale.pop(key)
    lr_entry = config["lrs"][row["lr"]]
    train.update(lr_entry if isinstance(lr_entry, dict) else {"lr": lr_entry})
    train["lr"], train["seed"] = float(train["lr"]), int(row["seed"])
    model = {
        **config["model"],
        **scale,
        "residual": row["variant"],
        "n_streams": int(row["n"]),
        "maps": list(config["map_sets"][row["maps"]]),
    }
    return {
        "profile": config["profile"],
        "name": f"{row['variant']}-n{row['n']}-{row['scale']}-{row['maps']}-{row['lr']}-s{row['seed']}",
        "model": model,
        "data": dict(config["data"]),
        "train": train,
        "tracking": {"tracking_uri": tracking_uri(config), "experiment": config["profile"]},
    }


def cell_configs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``cell_id -> resolved cell config`` for every row of the grid (ids from the trainer)."""
    from mhc_bench.train.config import CellConfig, cell_id

    cells: dict[str, dict[str, Any]] = {}
    for row in expand_grid(config).to_dict("records"):
        raw = cell_config(config, row)
        try:
            cid = cell_id(CellConfig.model_validate(raw))
        except Exception as err:
            raise ProfileError(f"cell {raw['name']}: {err}") from None
        cells[cid] = {**raw, "grid": {k: (int(v) if k in ("n", "seed") else v) for k, v in row.items()}}
    return cells


@cache
def _cached_cells(path: str, mtime: float) -> dict[str, dict[str, Any]]:
    return cell_configs(load_profile(path))


def profile_cells(name_or_path: str | Path) -> dict[str, dict[str, Any]]:
    path = profile_path(name_or_path)
    return _cached_cells(str(path), path.stat().st_mtime)


def write_cell_yaml(cell: dict[str, Any], path: Path) -> None:
    """Write a cell's training config (without the grid bookkeeping) as YAML."""
    body = {k: v for k, v in cell.items() if k != "grid"}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(body, sort_keys=False))
