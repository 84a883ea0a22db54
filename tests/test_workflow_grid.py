"""Profiles: schema validation, grid expansion, dry runs of every profile (incl. SLURM)."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml

from mhc_bench.paths import PROJECT_ROOT
from mhc_bench.workflow.grid import (
    PROFILE_DIR,
    ProfileError,
    cell_config,
    expand_grid,
    load_profile,
    profile_cells,
    validate_profile,
)

PROFILES = sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def minimal_profile() -> dict:
    return {
        "profile": "t",
        "grid": [{"variant": ["baseline", "hc", "mhc"], "n": [2, 4], "scale": ["s"], "seed": [0, 1]}],
        "scales": {"s": {"d_model": 16, "n_layer": 1, "n_head": 2}},
    }


def test_expected_profiles_exist() -> None:
    assert {"smoke", "quick", "cpu-full", "gpu-small", "gpu-paper-shape"} <= set(PROFILES)


def test_baseline_only_at_n1_and_grid_is_the_product() -> None:
    config = validate_profile(minimal_profile())
    grid = expand_grid(config)
    base = grid[grid.variant == "baseline"]
    assert set(base.n) == {1} and len(base) == 2  # two seeds, folded from n in {2, 4}
    assert len(grid[grid.variant != "baseline"]) == 2 * 2 * 2
    assert list(grid.columns) == ["variant", "n", "scale", "seed", "maps", "lr"]


def test_exclusions_and_lr_overrides() -> None:
    raw = minimal_profile()
    raw["exclude"] = [{"variant": "hc", "n": 4}]
    raw["lrs"] = {"base": 0.001, "stress": {"lr": 0.01, "grad_clip": 0.0}}
    raw["grid"].append({"variant": ["mhc"], "n": [4], "scale": ["s"], "seed": [0], "lr": ["stress"]})
    config = validate_profile(raw)
    grid = expand_grid(config)
    assert grid[(grid.variant == "hc") & (grid.n == 4)].empty
    stress = grid[grid.lr == "stress"].iloc[0].to_dict()
    cell = cell_config(config, stress)
    assert cell["train"]["lr"] == 0.01 and cell["train"]["grad_clip"] == 0.0 and cell["train"]["seed"] == 0


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda c: c["grid"][0].update(variant=["resnet"]), "resnet"),
        (lambda c: c["grid"][0].update(n=[0]), "minimum"),
        (lambda c: c.update(unknown_key=1), "unknown_key"),
        (lambda c: c["scales"]["s"].update(d_model="wide"), "wide"),
        (lambda c: c["grid"][0].update(scale=["nope"]), "grid[0].scale"),
        (lambda c: c["grid"][0].update(lr=["fast"]), "grid[0].lr"),
        (lambda c: c.update(eval={"limit": 0}), "limit"),
    ],
)
def test_bad_profile_values_name_the_key(mutate, key: str) -> None:
    raw = minimal_profile()
    mutate(raw)
    with pytest.raises(ProfileError, match=key.replace("[", r"\[").replace("]", r"\]")):
        validate_profile(raw)


def test_bad_cell_values_fail_before_compute() -> None:
    raw = minimal_profile()
    raw["scales"]["s"]["n_head"] = 3  # 16 % 3 != 0
    with pytest.raises(ProfileError, match="d_model"):
        from mhc_bench.workflow.grid import cell_configs

        cell_configs(validate_profile(raw))


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_validates_and_has_unique_cells(profile: str) -> None:
    config = load_profile(profile)
    cells = profile_cells(profile)
    assert len(cells) == len(expand_grid(config)) > 0
    for cid, cell in cells.items():
        assert cid.startswith(f"{cell['grid']['variant']}-n{cell['grid']['n']}-")


def test_quick_profile_has_three_seeds_per_variant() -> None:
    grid = expand_grid(load_profile("quick"))
    for variant in ("baseline", "hc", "mhc"):
        assert set(grid[grid.variant == variant].seed) == {0, 1, 2}


def test_cells_command_lists_ids() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mhc_bench.cli", "cells", "--profile", "smoke", "--ids-only"],
        capture_output=True, text=True, check=True, cwd=PROJECT_ROOT,
    ).stdout.split()
    assert out == list(profile_cells("smoke"))


def _dry_run(profile: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "--cores", "2",
         "--configfile", str(PROFILE_DIR / f"{profile}.yaml"), *extra],
        capture_output=True, text=True, cwd=PROJECT_ROOT,
    )


@pytest.mark.parametrize("profile", ["gpu-small", "gpu-paper-shape", "cpu-full"])
def test_profiles_dry_run(profile: str) -> None:
    result = _dry_run(profile)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _job_counts(result.stdout)["train"] == len(profile_cells(profile))


def _job_counts(stdout: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run: rule name -> job count."""
    counts = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


def test_slurm_profile_dry_run() -> None:
    result = _dry_run("gpu-small", "--profile", str(PROJECT_ROOT / "workflows" / "profiles" / "slurm"))
    assert result.returncode == 0, result.stderr[-3000:]
    slurm = yaml.safe_load((PROJECT_ROOT / "workflows" / "profiles" / "slurm" / "config.yaml").read_text())
    assert slurm["executor"] == "slurm" and "train" in slurm["set-resources"]


def test_bad_profile_fails_snakemake_validation(tmp_path) -> None:
    raw = copy.deepcopy(yaml.safe_load((PROFILE_DIR / "smoke.yaml").read_text()))
    raw["train_typo"] = 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(bad)],
        capture_output=True, text=True, cwd=PROJECT_ROOT,
    )
    assert result.returncode != 0
    assert "train_typo" in result.stdout + result.stderr


def test_cell_command_plans_exactly_that_cell() -> None:
    cid = list(profile_cells("smoke"))[1]
    result = subprocess.run(
        [sys.executable, "-m", "mhc_bench.cli", "cell", cid, "--dry-run"],
        capture_output=True, text=True, cwd=PROJECT_ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"results/smoke/cells/{cid}/eval.json" in result.stdout
    assert _job_counts(result.stdout).get("train") == 1


def test_cell_command_rejects_an_unknown_id() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mhc_bench.cli", "cell", "mhc-n9-nope"], capture_output=True, text=True,
        cwd=PROJECT_ROOT,
    )
    assert result.returncode == 2 and "none of the profiles" in result.stdout


def test_ablation_profiles_carry_the_hc_rows_of_table_1() -> None:
    """The paper's Table 1 ablates HC: every profile that ablates maps has HC rows for each map set
    it uses (mHC rows are an extension); the cells' configs list exactly those maps."""
    for name in PROFILES:
        cells = profile_cells(name)
        grids = [c["grid"] for c in cells.values()]
        ablated = {(g["variant"], g["maps"]) for g in grids if g["maps"] != "all"}
        if not ablated:
            continue
        mhc_sets = {m for v, m in ablated if v == "mhc"}
        hc_sets = {m for v, m in ablated if v == "hc"}
        assert hc_sets and mhc_sets <= hc_sets, (name, ablated)
        config = load_profile(name)
        for cell in cells.values():
            g = cell["grid"]
            if g["variant"] == "hc":
                assert cell["model"]["maps"] == list(config["map_sets"][g["maps"]])
