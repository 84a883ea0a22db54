"""A local-file profile through real Snakemake: JSON Lines read with ``datasets``, then a cell trains.

Offline and self-contained: the corpus is written here, the data cache is a
temporary folder, and only the cells' ``metrics.json`` are asked for (no task
suite, bench or report, which the smoke run covers). Also: the GPU profiles name
a Hub corpus and a budget that keeps every cell on fresh tokens.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mhc_bench.data import DataConfig
from mhc_bench.paths import PROJECT_ROOT
from mhc_bench.workflow.grid import cell_configs, load_profile

SMOKE = PROJECT_ROOT / "workflows" / "config" / "smoke.yaml"


@pytest.mark.parametrize("profile", ["gpu-small", "gpu-paper-shape"])
def test_gpu_profiles_train_every_cell_on_fresh_web_tokens(profile: str) -> None:
    config = load_profile(profile)
    data = DataConfig(**config["data"])  # validates offline: nothing is fetched to list the cells
    assert data.corpus.startswith("hf:") and data.pretrained_tokenizer and data.max_epochs == 1
    assert data.train_tokens is not None and data.val_tokens is not None
    for cell in cell_configs(config).values():
        planned = cell["train"]["steps"] * cell["train"]["batch_size"] * cell["model"]["seq_len"]
        assert planned <= data.train_tokens * data.max_epochs, (cell["name"], planned)


@pytest.mark.slow
def test_local_jsonl_profile_trains_end_to_end(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    fixture = PROJECT_ROOT / "tests" / "fixtures" / "corpus"
    words_list = " ".join(p.read_text() for p in sorted(fixture.glob("*.txt"))).split()
    for part in range(2):
        rows = [{"text": f"Row {part}-{i}: " + " ".join(words_list[(i * 13) % 400:(i * 13) % 400 + 40])}
                for i in range(150)]
        (corpus / f"part-{part}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    profile = yaml.safe_load(SMOKE.read_text())
    profile.update(
        profile="local-jsonl",
        grid=[{"variant": ["mhc"], "n": [2], "scale": ["d32-b2"], "seed": [0]}],
        data={"corpus": str(corpus / "*.jsonl"), "tokenizer": "bpe", "vocab_size": 300,
              "holdout_fraction": 0.1, "train_tokens": 8_000, "val_tokens": 600, "max_epochs": 2},
        eval={"enabled": False},
        bench={"enabled": False},
    )
    config_file = tmp_path / "local-jsonl.yaml"
    config_file.write_text(yaml.safe_dump(profile))
    cells = cell_configs(load_profile(config_file))
    targets = [f"results/local-jsonl/cells/{cid}/metrics.json" for cid in cells]

    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["MHC_BENCH_CACHE"] = str(tmp_path / "cache")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(PROJECT_ROOT / "Snakefile"),
           "--directory", str(tmp_path / "work"), "--configfile", str(config_file), "--cores", "2", *targets]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, env=env)
    assert result.returncode == 0, result.stderr[-5000:]

    (cid,) = cells
    metrics = json.loads((tmp_path / "work" / targets[0]).read_text())
    assert metrics["cell_id"] == cid and metrics["status"] == "completed"
    assert metrics["epochs_seen"] == pytest.approx(metrics["tokens_seen"] / 8_000)
    prepared = json.loads((tmp_path / "work" / "results" / "local-jsonl" / "data" / "base.json").read_text())
    meta = json.loads((Path(prepared["dir"]) / "meta.json").read_text())
    assert meta["tokens"] == {"train": 8_000, "val": 600, "test": 600}
    assert meta["source"]["names"] == ["part-0.jsonl", "part-1.jsonl"]
