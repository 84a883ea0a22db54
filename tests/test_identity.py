"""One experiment identity: a cell id hashes what changes the experiment, and only non-defaults.

Execution settings (kernel path, recompute, checkpoint cadence, threads, placement) are outside it,
so switching to ``kernels: compile`` never retrains a cell; a knob written at its default is the
same cell as one left out, so adding a knob to a variant keeps every existing id.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from mhc_bench.cellconfig import cell_id, identity, parse_cell_config, setting_hash

BASE: dict[str, Any] = {
    "model": {"mixing": {"kind": "mhc"}, "n_streams": 4, "d_model": 32, "n_layer": 2, "n_head": 2},
    "data": {"tokenizer": "char"},
    "train": {"steps": 30, "lr": 3e-3, "seed": 1},
}


def _id(**changes: Any) -> str:
    raw = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        if section == "mixing":
            raw["model"]["mixing"][key] = value
        else:
            raw[section][key] = value
    return cell_id(parse_cell_config(raw))


@pytest.mark.parametrize("change", [
    {"model__kernels": "compile"}, {"model__kernels": "torch"}, {"model__recompute": -1},
    {"train__ckpt_every": 7}, {"train__num_threads": 2}, {"train__accelerator": "cpu"},
    {"train__strategy": "ddp"},
])
def test_execution_settings_leave_the_id_alone(change: dict[str, Any]) -> None:
    assert _id(**change) == _id()


@pytest.mark.parametrize("change", [
    {"mixing__sinkhorn_iters": 20}, {"mixing__init": "onehot"}, {"mixing__maps": ["res", "pre", "post"]},
    {"model__merge": "sum"}, {"train__grad_clip": 1.0}, {"model__dropout": 0.0},
])
def test_a_value_written_at_its_default_is_the_same_cell(change: dict[str, Any]) -> None:
    assert _id(**change) == _id()


@pytest.mark.parametrize("change", [
    {"mixing__sinkhorn_iters": 5}, {"mixing__init": "near_identity"}, {"mixing__init": "megatron"},
    {"train__lr": 1e-2},
    {"train__seed": 2}, {"model__merge": "mean"}, {"model__d_model": 64}, {"train__devices": 2},
])
def test_what_changes_the_experiment_changes_the_id(change: dict[str, Any]) -> None:
    assert _id(**change) != _id()


def test_a_changed_default_keeps_old_ids_and_gives_new_cells_new_ones() -> None:
    """mHC's default init moved from megatron to onehot: a config naming megatron is the cell that was
    the default before (same id as a config of that time would get), the new default is another cell."""
    old = _id(mixing__init="megatron")
    assert "init" not in old and _id() != old and "-init-onehot-" in _id()


def test_ids_name_non_default_knobs_readably() -> None:
    assert "-it5-" in _id(mixing__sinkhorn_iters=5)
    assert "-res+pre-" in _id(mixing__maps=["pre", "res"])
    assert "-nomaps-" in _id(mixing__maps=[])


def test_the_identity_holds_only_non_defaults_and_the_setting_drops_the_seed() -> None:
    cfg = parse_cell_config(copy.deepcopy(BASE))
    ident = identity(cfg)
    # init is measured against its identity base (megatron, the default before onehot)
    assert ident["model"]["mixing"] == {"kind": "mhc", "init": "onehot"}
    assert set(ident["train"]) == {"steps", "lr", "seed"}
    other_seed = copy.deepcopy(BASE)
    other_seed["train"]["seed"] = 9
    assert setting_hash(parse_cell_config(other_seed)) == setting_hash(cfg)
