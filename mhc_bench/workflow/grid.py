"""Expand a profile's declared grid into training cells.

A profile (``workflows/config/<name>.yaml``, typed by :class:`~mhc_bench.workflow.profile.Profile`)
declares blocks of a grid, each the product of its lists (variant x n x scale x seed x maps x
lr x data x the block's knob axes); the union of blocks minus the ``exclude`` rows is the grid.
A value that a variant cannot take is folded, then rows are de-duplicated: a single-stream
variant (the baseline) exists only at n = 1, a variant without maps only at
``maps=res+pre+post``, a variant without a knob, or with the knob at its default, only at
``None`` in the knob's column ``mixing.<knob>`` (the cell id omits defaults). A cell produced
by several blocks serves all of their experiments.

Why not ``snakemake.utils.Paramspace`` patterns: the cell id is the one the trainer derives
from the resolved config (readable part + config hash, see
``mhc_bench.cellconfig.cell_id``), so the Snakefile maps ids to configs with a lookup
table and constrains the ``{cell}`` wildcard to the known ids. The grid itself is still a
categorical/integer DataFrame, as Paramspace wants.
"""

from __future__ import annotations

import copy
import itertools
import json
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from mhc_bench.errors import UserError
from mhc_bench.paths import PROJECT_ROOT, require_checkout

PROFILE_DIR = PROJECT_ROOT / "workflows" / "config"
GRID_COLUMNS = ("variant", "n", "scale", "seed", "maps", "lr", "data", "rerun")
KNOB_PREFIX = "mixing."  # knob axis columns: mixing.<knob>


class ProfileError(UserError, ValueError):
    """A profile that fails validation; the message names the offending key."""


def profile_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        return path
    require_checkout()
    return PROFILE_DIR / f"{name_or_path}.yaml"


def write_schema(path: Path) -> str:
    """Write the profile JSON Schema of the registered variants to ``path``; its absolute path."""
    from mhc_bench.workflow.profile import schema_text

    path.parent.mkdir(parents=True, exist_ok=True)
    text = schema_text()
    if not path.exists() or path.read_text() != text:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return str(path.resolve())


def known_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def validate_profile(config: dict[str, Any]) -> dict[str, Any]:
    """The profile with every default filled in, as plain data (raises :class:`ProfileError`)."""
    from mhc_bench.workflow.profile import parse_profile

    try:
        profile = parse_profile(copy.deepcopy(config), f"profile {config.get('profile', '?')!r}")
    except ValueError as err:
        raise ProfileError(str(err)) from None
    return profile.model_dump(mode="json")


def load_profile(name_or_path: str | Path) -> dict[str, Any]:
    path = profile_path(name_or_path)
    if not path.exists():
        raise ProfileError(f"no profile {str(name_or_path)!r} (known: {known_profiles()})")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ProfileError(f"{path}: not valid YAML: {err}") from None
    return validate_profile(raw)


def knob_axes(config: dict[str, Any]) -> list[str]:
    """Every knob that some grid block sweeps, in first-seen order."""
    return list(dict.fromkeys(k for block in config["grid"] for k in block.get("mixing", {})))


def _fold(row: dict[str, Any]) -> dict[str, Any]:
    """Values a variant cannot take become the one it has (see the module docstring)."""
    from mhc_bench import variants
    from mhc_bench.workflow.profile import ALL_MAPS, has_knob

    spec = variants.get(row["variant"])
    if spec.single_stream:
        row["n"] = 1
    if not has_knob(row["variant"], "maps"):
        row["maps"] = ALL_MAPS
    defaults = spec.knobs.model_construct()
    for column in row:
        if not column.startswith(KNOB_PREFIX):
            continue
        knob = column[len(KNOB_PREFIX):]
        # A variant without the knob, or the knob at its default, is one cell (the id omits defaults).
        if not has_knob(row["variant"], knob) or row[column] == getattr(defaults, knob):
            row[column] = None
    return row


def expand_grid(config: dict[str, Any]) -> pd.DataFrame:
    """The grid as a DataFrame (``GRID_COLUMNS``, knob axes, ``experiments``, ``evaluate``), a row a cell."""
    from mhc_bench.workflow.profile import Exclude

    excludes = [Exclude.model_validate(ex) for ex in config["exclude"]]
    knobs = [KNOB_PREFIX + k for k in knob_axes(config)]
    columns = [*GRID_COLUMNS, *knobs]
    rows: dict[tuple, dict[str, Any]] = {}
    for block in config["grid"]:
        axes = [block[c] for c in GRID_COLUMNS] + [block.get("mixing", {}).get(k[len(KNOB_PREFIX):], [None])
                                                   for k in knobs]
        for values in itertools.product(*axes):
            row = _fold(dict(zip(columns, values, strict=True)))
            if any(ex.matches({**row, "experiment": block["experiment"]}) for ex in excludes):
                continue
            key = tuple(json.dumps(row[c], sort_keys=True) for c in columns)
            entry = rows.setdefault(key, {**row, "experiments": [], "evaluate": False})
            if block["experiment"] not in entry["experiments"]:
                entry["experiments"].append(block["experiment"])
            entry["evaluate"] = entry["evaluate"] or block["evaluate"]
    frame = pd.DataFrame(list(rows.values()), columns=[*columns, "experiments", "evaluate"])
    return frame.astype({"n": int, "seed": int, "rerun": int, "evaluate": bool})


def results_root(config: dict[str, Any]) -> Path:
    """``<results_dir>/<profile>``, relative to the working directory (Snakemake's workdir)."""
    return Path(config["results_dir"]) / config["profile"]


def tracking_uri(config: dict[str, Any]) -> str:
    """The profile's MLflow store, by the one rule of :func:`mhc_bench.tracking.resolve_uri`."""
    from mhc_bench.tracking import resolve_uri

    return resolve_uri(config["tracking_uri"], results_root(config))


def cell_mixing(config: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """``model.mixing`` of one grid row: the profile's knobs for its variant, then the row's axes."""
    from mhc_bench.workflow.profile import has_knob, maps_of

    variant = row["variant"]
    mixing: dict[str, Any] = {"kind": variant, **config.get("mixing", {}).get(variant, {})}
    if has_knob(variant, "maps"):
        mixing["maps"] = maps_of(row["maps"])
    for column, value in row.items():
        if column.startswith(KNOB_PREFIX) and value is not None and not _missing(value):
            mixing[column[len(KNOB_PREFIX):]] = value
    return mixing


def _missing(value: Any) -> bool:
    return isinstance(value, float) and value != value  # NaN from a DataFrame's empty cell


def cell_config(config: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """The training config of one grid row (the ``cell.yaml`` that ``mhc-bench train`` reads)."""
    scale = {k: v for k, v in config["scales"][row["scale"]].items() if v is not None}
    train = dict(config["train"])
    for key in ("batch_size", "steps"):
        if key in scale:
            train[key] = scale.pop(key)
    lr_entry = config["lrs"][row["lr"]]
    train.update(lr_entry if isinstance(lr_entry, dict) else {"lr": lr_entry})
    train["lr"], train["seed"] = float(train["lr"]), int(row["seed"])
    if int(row.get("rerun", 0)):
        train["rerun"] = int(row["rerun"])
    model = {**config["model"], **scale, "n_streams": int(row["n"]), "mixing": cell_mixing(config, row)}
    knobs = "".join(f"-{c[len(KNOB_PREFIX):]}{row[c]}" for c in sorted(row)
                    if c.startswith(KNOB_PREFIX) and row[c] is not None and not _missing(row[c]))
    return {
        "profile": config["profile"],
        "name": f"{row['variant']}-n{row['n']}-{row['scale']}-{row['maps']}{knobs}-{row['lr']}-{row['data']}"
                f"-s{row['seed']}" + (f"-r{int(row['rerun'])}" if int(row.get("rerun", 0)) else ""),
        "experiments": list(row.get("experiments") or []),
        "model": model,
        "data": {**config["data"], **config["data_variants"][row["data"]]},
        "train": train,
        # Resolved at run time (mhc_bench.tracking.resolve_uri): no machine's path in cell.yaml.
        "tracking": {"tracking_uri": config["tracking_uri"], "experiment": config["profile"]},
    }


def cell_configs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``cell_id -> resolved cell config`` for every row of the grid (ids from the trainer)."""
    from mhc_bench.cellconfig import CellConfig, cell_id

    cells: dict[str, dict[str, Any]] = {}
    for row in expand_grid(config).to_dict("records"):
        raw = cell_config(config, row)
        try:
            cid = cell_id(CellConfig.model_validate(raw))
        except Exception as err:
            raise ProfileError(f"cell {raw['name']}: {err}") from None
        grid = {k: (int(v) if k in ("n", "seed", "rerun") else bool(v) if k == "evaluate" else
                    None if _missing(v) else v)
                for k, v in row.items() if k != "experiments"}
        cells[cid] = {**raw, "grid": grid}
    return cells


@cache
def _cached_cells(path: str, mtime: float) -> dict[str, dict[str, Any]]:
    return cell_configs(load_profile(path))


def profile_cells(name_or_path: str | Path) -> dict[str, dict[str, Any]]:
    path = profile_path(name_or_path)
    if not path.exists():
        raise ProfileError(f"no profile {str(name_or_path)!r} (known: {known_profiles()})")
    return _cached_cells(str(path), path.stat().st_mtime)


def final_file(config: dict[str, Any], cell: dict[str, Any]) -> str:
    """The file that marks a cell done: eval.json when it is evaluated, else metrics.json."""
    from mhc_bench import cellfolder as cf

    return cf.EVAL if config["eval"]["enabled"] and cell["grid"]["evaluate"] else cf.METRICS


def write_cell_yaml(cell: dict[str, Any], path: Path) -> None:
    """Write a cell's training config (without the grid bookkeeping) as YAML."""
    body = {k: v for k, v in cell.items() if k != "grid"}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(body, sort_keys=False))
