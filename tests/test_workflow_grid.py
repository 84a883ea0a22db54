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
    cell_configs,
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
    assert list(grid.columns) == ["variant", "n", "scale", "seed", "maps", "lr", "data", "rerun",
                                  "experiments", "evaluate"]  # no knob axis columns unless a block sweeps one


def test_knob_axes_apply_to_the_variants_that_have_the_knob() -> None:
    raw = minimal_profile()
    raw["grid"] = [{"experiment": "iters", "variant": ["baseline", "hc", "mhc"], "n": [4], "scale": ["s"],
                    "seed": [0], "mixing": {"sinkhorn_iters": [1, 5]}}]
    raw["mixing"] = {"mhc": {"init": "near_identity"}, "hc": {"alpha_init": 0.05}}
    cells = cell_configs(validate_profile(raw))
    mixing = sorted((c["model"]["mixing"]["kind"], c["model"]["mixing"].get("sinkhorn_iters"))
                    for c in cells.values())
    assert mixing == [("baseline", None), ("hc", None), ("mhc", 1), ("mhc", 5)]  # HC has no Sinkhorn: folded
    mhc = [c for c in cells.values() if c["model"]["mixing"]["kind"] == "mhc"]
    assert all(c["model"]["mixing"]["init"] == "near_identity" for c in mhc)
    assert len({cid.rsplit("-", 1)[1] for cid in cells}) == 4  # four distinct cells
    assert any("-it5-" in cid for cid in cells)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda g: g.update(mixing={"sinkhorn_iters": [0]}), "sinkhorn_iters"),
    (lambda g: g.update(variant=["hc"], mixing={"sinkhorn_iters": [5]}), "no variant of this block"),
    (lambda g: g.update(mixing={"maps": [["res"]]}), "not a knob axis"),
])
def test_bad_knob_axes_name_the_knob(mutate, message: str) -> None:
    raw = minimal_profile()
    mutate(raw["grid"][0])
    with pytest.raises(ProfileError, match=message):
        validate_profile(raw)


def test_profile_knobs_are_checked_against_their_variant() -> None:
    raw = minimal_profile()
    raw["mixing"] = {"hc": {"sinkhorn_iters": 5}}
    with pytest.raises(ProfileError, match=r"hc\.sinkhorn_iters"):
        validate_profile(raw)


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
        (lambda c: c["grid"][0].update(n=[0]), "grid.0.n"),
        (lambda c: c.update(unknown_key=1), "unknown_key"),
        (lambda c: c["scales"]["s"].update(d_model="wide"), "wide"),
        (lambda c: c["grid"][0].update(scale=["nope"]), "grid[0].scale"),
        (lambda c: c["grid"][0].update(lr=["fast"]), "grid[0].lr"),
        (lambda c: c["grid"][0].update(maps=["pre+res"]), "grid.0.maps"),
        (lambda c: c.update(eval={"limit": 0}), "eval.limit"),
        (lambda c: c.update(model={"n_streams": 4}), "model.n_streams"),  # the grid decides n
        (lambda c: c.update(train={"lr": 0.1}), "train.lr"),  # ... and the learning rate
        (lambda c: c.update(train={"grad_clip": -1}), "train.grad_clip"),
        (lambda c: c.update(data={"tokenizer": "wordpiece"}), "data.tokenizer"),
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


@pytest.mark.parametrize("profile", ["gpu-small", "cpu-full"])
def test_slurm_profile_dry_run(profile: str, tmp_path) -> None:
    filled = tmp_path / "slurm"  # the committed profile with an account, as its users fill it in
    filled.mkdir()
    committed = (PROJECT_ROOT / "workflows" / "profiles" / "slurm" / "config.yaml").read_text()
    (filled / "config.yaml").write_text(committed.replace("CHANGE_ME", "my_account"))
    result = _dry_run(profile, "--profile", str(filled))
    assert result.returncode == 0, result.stderr[-3000:]
    assert _job_counts(result.stdout)["train"] == len(profile_cells(profile))
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
    assert result.returncode == 2 and "none of the profiles" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_ablation_profiles_carry_the_hc_rows_of_table_1() -> None:
    """The paper's Table 1 ablates HC: every profile that ablates maps has HC rows for each map set
    it uses (mHC rows are an extension); the cells' configs list exactly those maps."""
    for name in PROFILES:
        cells = profile_cells(name)
        grids = [c["grid"] for c in cells.values()]
        ablated = {(g["variant"], g["maps"]) for g in grids if g["maps"] != "res+pre+post"}
        if not ablated:
            continue
        mhc_sets = {m for v, m in ablated if v == "mhc"}
        hc_sets = {m for v, m in ablated if v == "hc"}
        assert hc_sets and mhc_sets <= hc_sets, (name, ablated)
        for cell in cells.values():
            g = cell["grid"]
            expected = [] if g["maps"] == "none" else g["maps"].split("+")
            assert cell["model"]["mixing"].get("maps", expected) == expected


def test_a_minimal_profile_expands_to_the_same_cells_in_the_dag_and_the_cli(tmp_path) -> None:
    """No profile is merged over another: the DAG plans exactly the cells `mhc-bench cells` lists,
    and a key the profile leaves out takes the schema default in both (not quick's value)."""
    raw = minimal_profile()
    raw["bench"] = {"enabled": False}
    path = tmp_path / "minimal.yaml"
    path.write_text(yaml.safe_dump(raw))
    listed = subprocess.run([sys.executable, "-m", "mhc_bench.cli", "cells", "--profile", str(path),
                             "--ids-only"], capture_output=True, text=True, check=True, cwd=PROJECT_ROOT)
    ids = listed.stdout.split()
    plan = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "--cores", "1",
                           "--configfile", str(path)], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert _job_counts(plan.stdout)["train"] == len(ids) == 10  # 2 seeds x (baseline, hc/mhc at n 2, 4)
    assert "bench" not in _job_counts(plan.stdout)
    one = subprocess.run([sys.executable, "-m", "snakemake", f"results/t/cells/{ids[0]}/eval.json", "-n",
                          "--cores", "1", "--configfile", str(path)], capture_output=True, text=True,
                         cwd=PROJECT_ROOT)
    assert one.returncode == 0, one.stderr[-2000:]


def test_snakemake_without_a_profile_says_how_to_pass_one() -> None:
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1"],
                            capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert result.returncode != 0
    assert "--configfile workflows/config/<name>.yaml" in result.stdout + result.stderr


def test_unknown_profile_is_one_line_on_stderr() -> None:
    result = subprocess.run([sys.executable, "-m", "mhc_bench.cli", "cells", "--profile", "nonexistent"],
                            capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "no profile 'nonexistent'" in result.stderr


def test_the_committed_profile_schema_is_the_exported_one() -> None:
    from mhc_bench.workflow.profile import SCHEMA_FILE, schema_text

    assert SCHEMA_FILE.read_text() == schema_text(), "run: python -m mhc_bench.workflow.profile"


def test_experiments_label_the_cells_that_serve_them() -> None:
    raw = minimal_profile()
    raw["grid"].append({"experiment": "n_sweep", "variant": ["mhc"], "n": [2, 8], "scale": ["s"],
                        "seed": [0]})
    cells = cell_configs(validate_profile(raw))
    by_name = {c["name"]: c for c in cells.values()}
    assert by_name["mhc-n2-s-res+pre+post-base-base-s0"]["experiments"] == ["main", "n_sweep"]
    assert by_name["mhc-n8-s-res+pre+post-base-base-s0"]["experiments"] == ["n_sweep"]
    assert by_name["mhc-n4-s-res+pre+post-base-base-s1"]["experiments"] == ["main"]


def test_blocks_that_skip_evaluation_end_at_metrics_json(tmp_path) -> None:
    from mhc_bench.workflow.grid import final_file

    raw = minimal_profile()
    raw["grid"][0]["evaluate"] = False
    raw["grid"].append({"experiment": "downstream", "variant": ["mhc"], "n": [4], "scale": ["s"],
                        "seed": [0]})
    config = validate_profile(raw)
    cells = cell_configs(config)
    finals = {c["name"]: final_file(config, c) for c in cells.values()}
    assert finals["mhc-n4-s-res+pre+post-base-base-s0"] == "eval.json"  # also in the evaluated block
    assert finals["hc-n4-s-res+pre+post-base-base-s0"] == "metrics.json"
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw))
    plan = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "--cores", "1",
                           "--configfile", str(path)], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert plan.returncode == 0, plan.stdout[-2000:]
    counts = _job_counts(plan.stdout)
    assert counts["train"] == len(cells) and counts["evaluate"] == 1
