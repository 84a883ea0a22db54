"""What a profile, a config or a copied checkout can do to a run: nothing it should not.

- Every profile value reaches a shell quoted: a corpus path and a results folder holding
  ``'`` and ``$(...)`` are paths, never shell syntax (the data and store rules run for real).
- Numbers written as strings are converted, anything else is refused naming the key; an odd
  n such as 3 is a valid expansion rate.
- A copied or moved checkout is its own: ``make`` rebuilds a venv built for another folder,
  and the CLI of one checkout refuses to run inside another.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mhc_bench.paths import PROJECT_ROOT

CORPUS = Path(__file__).parent / "fixtures" / "corpus"
EVIL = "it's $(touch PWNED) `touch PWNED2`"


@pytest.mark.slow
def test_quotes_and_command_substitutions_in_profile_values_stay_text(tmp_path: Path) -> None:
    """Defect 3: `--data '{params.data}'` broke on a quote ("unexpected EOF") and ran `$(...)`."""
    corpus = tmp_path / EVIL / "corpus"
    shutil.copytree(CORPUS, corpus)
    profile = {
        "profile": "toy", "results_dir": f"res {EVIL}",
        "grid": [{"variant": ["mhc"], "n": [2], "scale": ["s"], "seed": [0]}],
        "scales": {"s": {"d_model": 32, "n_layer": 1, "n_head": 2}},
        "data": {"corpus": str(corpus), "tokenizer": "char"}, "eval": {"enabled": False},
        # the bench's arguments travel as one quoted word and are split again (rule_steps bench)
        "bench": {"args": ["--d-model", "32", "--n", "2", "--layers", "1", "--seq-len", "16", "--batch", "2",
                           "--repeats", "1", "--warmup", "1", "--paths", "torch", "--variants", "baseline",
                           "--skip", "recompute", "micro", "peer", "compile_cache"]},
    }
    config = tmp_path / "toy.yaml"
    config.write_text(yaml.safe_dump(profile))
    work = tmp_path / "work"
    results = f"res {EVIL}/toy"
    targets = [f"{results}/data/base.json", f"{results}/mlflow.ready", f"{results}/bench/bench.json"]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["MHC_BENCH_CACHE"] = str(tmp_path / "cache")  # the corpus is read from its odd path, not a cache
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(PROJECT_ROOT / "Snakefile"), "--directory",
           str(work), "--configfile", str(config), "--cores", "1", *targets]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    prepared = json.loads((work / targets[0]).read_text())
    assert prepared["vocab_size"] == 257 and str(tmp_path / "cache") in prepared["dir"]
    assert (work / results / "mlflow.db").exists()
    assert json.loads((work / targets[2]).read_text())["rows"]
    assert not list(tmp_path.rglob("PWNED*")) and not list(PROJECT_ROOT.glob("PWNED*"))


def test_numbers_as_strings_are_converted_and_anything_else_refused() -> None:
    """Defect 9: `lr: "3e-3"` trained silently. YAML 1.1 (PyYAML) reads an unquoted 3e-3 as a
    string, so numeric strings are converted, explicitly and to the same cell id; other strings
    are refused with the key named."""
    from mhc_bench.cellconfig import ConfigError, cell_id, parse_cell_config

    assert yaml.safe_load("lr: 3e-3") == {"lr": "3e-3"}  # why conversion is the friendly choice
    raw = {"model": {"mixing": "mhc", "n_streams": 3}, "data": {"corpus": str(CORPUS), "tokenizer": "char"}}
    as_text = parse_cell_config({**raw, "train": {"lr": "3e-3", "steps": "20"}})
    as_number = parse_cell_config({**raw, "train": {"lr": 0.003, "steps": 20}})
    assert as_text.train.lr == 0.003 and as_text.train.steps == 20 and as_text.model.n_streams == 3
    assert cell_id(as_text) == cell_id(as_number)
    for bad, key in (({"lr": "fast"}, "train.lr"), ({"steps": "1.5"}, "train.steps"),
                     ({"steps": 1.5}, "train.steps")):
        with pytest.raises(ConfigError, match=key):
            parse_cell_config({**raw, "train": bad})


def test_an_odd_n_is_a_valid_expansion_rate_in_a_profile() -> None:
    from mhc_bench.workflow.grid import cell_configs, validate_profile

    profile = validate_profile({
        "profile": "odd", "grid": [{"variant": ["mhc", "hc"], "n": [3], "scale": ["s"], "seed": [0]}],
        "scales": {"s": {"d_model": 32, "n_layer": 1, "n_head": 2}}, "lrs": {"base": "3e-3"}})
    cells = cell_configs(profile)
    assert {c["model"]["n_streams"] for c in cells.values()} == {3}
    assert {c["train"]["lr"] for c in cells.values()} == {0.003}


# ----------------------------------------------------------------------------- copied checkouts
def _make_plan(folder: Path, shebang: str) -> str:
    """``make -n venv`` in a folder holding the Makefile and a venv whose scripts say ``shebang``."""
    shutil.copy2(PROJECT_ROOT / "Makefile", folder / "Makefile")
    shutil.copy2(PROJECT_ROOT / "pyproject.toml", folder / "pyproject.toml")
    (folder / ".venv" / "bin").mkdir(parents=True)
    (folder / ".venv" / "bin" / "mhc-bench").write_text(f"#!{shebang}\n")
    (folder / ".venv" / ".installed").touch()
    done = subprocess.run(["make", "-n", "venv"], cwd=folder, capture_output=True, text=True, check=True)
    return done.stdout


def test_make_rebuilds_a_venv_built_for_another_folder(tmp_path: Path) -> None:
    """Defect 2: `cp -a p copy && cd copy && make report` ran p's venv and wrote into p/."""
    if shutil.which("make") is None:
        pytest.skip("no make")
    copy = tmp_path / "copy"
    copy.mkdir()
    plan = _make_plan(copy, "/somewhere/else/.venv/bin/python")
    assert "rm -rf .venv" in plan and "python3 -m venv .venv" in plan
    own = tmp_path / "own"
    own.mkdir()
    assert "Nothing to be done" in _make_plan(own, f"{own.resolve()}/.venv/bin/python")


def test_the_cli_of_one_checkout_refuses_to_run_inside_another(tmp_path: Path) -> None:
    other = tmp_path / "copy"
    (other / "workflows" / "config").mkdir(parents=True)
    (other / "Snakefile").write_text("")
    env = {k: v for k, v in os.environ.items() if k != "MHC_BENCH_ROOT"}
    cmd = [sys.executable, "-m", "mhc_bench.cli", "cells", "--profile", "smoke", "--ids-only"]
    refused = subprocess.run(cmd, cwd=other / "workflows", capture_output=True, text=True, env=env)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    line = refused.stderr.strip()
    assert line.count("\n") == 0 and str(other) in line and "make venv" in line
    allowed = subprocess.run(cmd, cwd=other, capture_output=True, text=True,
                             env={**env, "MHC_BENCH_ROOT": str(PROJECT_ROOT)})
    assert allowed.returncode == 0, allowed.stderr
