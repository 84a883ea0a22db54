"""What a new user trying to break the suite runs into: one clear line, exit 2, nothing left behind.

Each test reproduces a failure that used to end in a traceback, a silently accepted input or a
state that needed manual repair.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from mhc_bench import cellfolder as cf
from mhc_bench import cli
from mhc_bench.paths import PROJECT_ROOT

CORPUS = Path(__file__).parent / "fixtures" / "corpus"


def tiny(store: Path, **train: Any) -> dict[str, Any]:
    settings = dict(steps=20, batch_size=4, lr=3e-3, warmup_steps=2, probe_every=10, val_every=10,
                    val_batches=2, ckpt_every=10, num_threads=1, seed=0, **train)
    return {"model": dict(d_model=32, n_layer=1, n_head=2, seq_len=32, mixing="mhc", n_streams=2),
            "data": {"corpus": str(CORPUS), "tokenizer": "char"}, "train": settings,
            "tracking": {"tracking_uri": f"sqlite:///{store / 'mlflow.db'}"}}


def _one_error_line(capsys: pytest.CaptureFixture, command: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith(f"mhc-bench {command}: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def test_an_empty_cell_config_is_an_error_not_all_defaults(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    out = tmp_path / "cell"
    assert cli.main(["train", "--config", str(empty), "--out", str(out)]) == 2
    assert "is empty" in _one_error_line(capsys, "train")
    assert not out.exists()


def test_a_missing_cell_config_is_one_line(tmp_path: Path, capsys) -> None:
    assert cli.main(["train", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read cell config" in _one_error_line(capsys, "train")


def test_seq_len_longer_than_the_validation_split_fails_before_any_folder_or_run(tmp_path: Path,
                                                                                  capsys) -> None:
    from mhc_bench.data import DataConfig, prepare_data

    val_tokens = len(prepare_data(DataConfig(corpus=str(CORPUS), tokenizer="char")).val_bin.read_bytes()) // 2
    raw = tiny(tmp_path / "store")
    raw["model"]["seq_len"] = val_tokens
    config = tmp_path / "long.yaml"
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "cell"
    assert cli.main(["train", "--config", str(config), "--out", str(out)]) == 2
    err = _one_error_line(capsys, "train")
    assert "model.seq_len" in err and "validation split" in err
    assert not out.exists() and not (tmp_path / "store" / "mlflow.db").exists()  # no RUNNING run left


def test_a_read_only_results_folder_is_one_line(tmp_path: Path, capsys) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    locked = tmp_path / "results"
    locked.mkdir()
    locked.chmod(0o500)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny(tmp_path / "store")))
    try:
        assert cli.main(["train", "--config", str(config), "--out", str(locked / "cell")]) == 2
    finally:
        locked.chmod(0o700)
    assert "not writable" in _one_error_line(capsys, "train")


def test_the_writability_check_names_the_folder(tmp_path: Path, monkeypatch) -> None:
    """As root the permission test above is skipped; the check itself still runs here."""
    from mhc_bench.errors import UserError
    from mhc_bench.train import runner

    monkeypatch.setattr(runner.os, "access", lambda path, mode: False)
    with pytest.raises(UserError, match="is not writable"):
        runner.check_writable(tmp_path / "results" / "cell")


def test_a_truncated_checkpoint_says_which_file_and_what_to_do(tmp_path: Path, capsys) -> None:
    from mhc_bench import tracking

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny(tmp_path / "store")))
    out = tmp_path / "cell"
    assert cli.main(["train", "--config", str(config), "--out", str(out)]) == 0
    (out / cf.METRICS).unlink()  # as if killed after the checkpoint, before finishing
    ckpt = out / cf.CHECKPOINT
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    again = subprocess.run([sys.executable, "-m", "mhc_bench.cli", "train", "--config", str(config),
                            "--out", str(out)], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert again.returncode == 2
    last_line = again.stderr.strip().splitlines()[-1]
    assert last_line.startswith("mhc-bench train: error: ")
    assert str(ckpt) in last_line and "delete it" in last_line
    assert "Traceback" not in again.stderr
    ref = tracking.RunRef.load(out / cf.RUN)
    assert tracking.client(ref.tracking_uri).get_run(ref.run_id).info.status == "FAILED"


def test_every_help_is_light(tmp_path: Path) -> None:
    """``--help`` must not import torch, lightning, lm-eval or mlflow (seconds each)."""
    from mhc_bench.cli import COMMANDS

    code = textwrap.dedent("""
        import sys, contextlib, io
        from mhc_bench import cli
        for name in cli.COMMANDS:
            if name not in cli.PASSTHROUGH:
                with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):
                    cli.main([name, "--help"])
        print(sorted(m for m in ("torch", "lightning", "lm_eval", "mlflow", "pandas") if m in sys.modules))
        for name in cli.PASSTHROUGH:  # the other tool's own help: that tool, but still no torch
            with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):
                cli.main([name, "--help"])
        print(sorted(m for m in ("torch", "lightning", "mlflow") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[]", "[]"] and len(COMMANDS) >= 8


# ----------------------------------------------------------------------------- the run lock
HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from mhc_bench.workflow.snakerun import project_lock
    with project_lock("make reproduce (test holder)", Path(sys.argv[1])):
        print("locked", flush=True)
        time.sleep(60)
""")


def test_a_second_concurrent_run_is_refused_naming_the_holder(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        second = subprocess.run([sys.executable, "-m", "mhc_bench.cli", "reproduce", "--profile", "smoke",
                                 "--directory", str(tmp_path), "--dry-run"],
                                capture_output=True, text=True, cwd=PROJECT_ROOT)
        assert second.returncode == 2
        assert "another mhc-bench run is in progress" in second.stderr and "test holder" in second.stderr
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_run_leaves_a_snakemake_lock_that_the_next_run_clears(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    holder.kill()  # SIGKILL: no cleanup, like a killed `make reproduce`
    holder.wait()
    locks = tmp_path / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.input.lock").write_text("results/smoke/cells/x/cell.yaml\n")
    plan = subprocess.run([sys.executable, "-m", "mhc_bench.cli", "reproduce", "--profile", "smoke",
                           "--directory", str(tmp_path), "--dry-run"],
                          capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert plan.returncode == 0, plan.stdout[-2000:] + plan.stderr[-2000:]
    assert "removed a stale Snakemake lock" in plan.stderr and not (locks / "0.input.lock").exists()


def test_broken_result_files_are_moved_aside_for_regeneration(tmp_path: Path) -> None:
    from cell_records import cell_config, eval_record, metrics_record, write_cell

    from mhc_bench.workflow.snakerun import quarantine_broken_outputs

    cfg = cell_config("mhc", 4, 0)
    good = write_cell(tmp_path / "cells", cfg, metrics_record(cfg))
    cf.write_eval(good, eval_record(good.name, {"mmlu": ("acc", 0.3, 0.02, 0.25)}))
    bad = write_cell(tmp_path / "cells", cell_config("hc", 4, 0), metrics_record(cell_config("hc", 4, 0)))
    (bad / cf.METRICS).write_text('{"cell_id": "truncated"')
    (bad / cf.EVAL).write_text(json.dumps({"status": "completed"}))
    moved = quarantine_broken_outputs(tmp_path / "cells")
    assert sorted(p.name for p, _ in moved) == ["eval.json.corrupt", "metrics.json.corrupt"]
    assert not (bad / cf.METRICS).exists() and (good / cf.METRICS).exists() and (good / cf.EVAL).exists()


def test_the_lock_is_released_when_its_holder_exits(tmp_path: Path) -> None:
    from mhc_bench.workflow.snakerun import project_lock

    with project_lock("first", tmp_path):
        pass
    with project_lock("second", tmp_path):  # acquired, not refused
        holder = tmp_path / ".snakemake" / "mhc-bench.lock.json"
        assert '"run": "second"' in holder.read_text()
    assert not holder.exists()  # the holder record goes with the lock


def test_a_regular_install_outside_the_checkout_says_how_to_find_it(tmp_path: Path) -> None:
    """Not an editable install: the package sits in site-packages, away from Snakefile and workflows/."""
    import shutil

    site = tmp_path / "site"
    shutil.copytree(PROJECT_ROOT / "mhc_bench", site / "mhc_bench",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "MHC_BENCH_ROOT"}
    env["PYTHONPATH"] = str(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cmd = [sys.executable, "-m", "mhc_bench.cli", "cells", "--profile", "smoke", "--ids-only"]
    lost = subprocess.run(cmd, capture_output=True, text=True, cwd=elsewhere, env=env)
    assert lost.returncode == 2 and "MHC_BENCH_ROOT" in lost.stderr and "Traceback" not in lost.stderr
    found = subprocess.run(cmd, capture_output=True, text=True, cwd=elsewhere,
                           env={**env, "MHC_BENCH_ROOT": str(PROJECT_ROOT)})
    assert found.returncode == 0 and found.stdout.split()
    inside = subprocess.run(cmd, capture_output=True, text=True, cwd=PROJECT_ROOT / "workflows", env=env)
    assert inside.returncode == 0 and inside.stdout.split() == found.stdout.split()
