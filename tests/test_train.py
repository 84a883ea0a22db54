"""Training one cell end to end on CPU: Lightning + MLflow (SQLite), outputs, divergence, config errors.

Tiny cells (d_model 32, 2 blocks, seq 32, batch 4, 30 steps, byte tokenizer on the
fixture corpus) so the whole file runs in well under a minute of CPU.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from mhc_bench import cellfolder as cf
from mhc_bench import cli
from mhc_bench.cellconfig import ConfigError, cell_id, config_hash, parse_cell_config
from mhc_bench.train.data import eval_batches
from mhc_bench.train.module import uses_weight_decay
from mhc_bench.train.runner import train_cell
from mhc_bench.train.schedule import lr_multiplier
from mhc_bench.trained import load_trained_model

CORPUS = Path(__file__).parent / "fixtures" / "corpus"


def tiny(store: Path, residual: str = "mhc", n: int = 2, **train: Any) -> dict[str, Any]:
    settings = dict(steps=30, batch_size=4, lr=3e-3, warmup_steps=5, probe_every=10, val_every=10,
                    val_batches=2, ckpt_every=10, num_threads=1, seed=0)
    settings.update(train)
    return {
        "model": dict(d_model=32, n_layer=2, n_head=2, seq_len=32, mixing=residual, n_streams=n),
        "data": {"corpus": str(CORPUS), "tokenizer": "char"},
        "train": settings,
        "tracking": {"tracking_uri": f"sqlite:///{store / 'mlflow.db'}"},
    }


def client(store: Path) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")


def runs_named(store: Path, name: str) -> list[Any]:
    c = client(store)
    exp = c.get_experiment_by_name("mhc-bench")
    return c.search_runs([exp.experiment_id], filter_string=f"attributes.run_name = '{name}'")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture(scope="module")
def trained_mhc(store: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path, dict]:
    cfg = parse_cell_config(tiny(store))
    out = tmp_path_factory.mktemp("cells") / "mhc"
    return cfg, out, train_cell(cfg, out)


def _train(store: Path, tmp_path: Path, residual: str, n: int) -> tuple[Any, Path, dict]:
    cfg = parse_cell_config(tiny(store, residual, n))
    out = tmp_path / residual
    return cfg, out, train_cell(cfg, out)


@pytest.mark.parametrize(("residual", "n"), [("baseline", 1), ("hc", 2), ("mhc", 2)])
def test_cell_trains_writes_outputs_and_tracks_in_mlflow(
    residual: str, n: int, store: Path, tmp_path: Path, trained_mhc: tuple[Any, Path, dict]
) -> None:
    cfg, out, metrics = trained_mhc if residual == "mhc" else _train(store, tmp_path, residual, n)
    cid = cell_id(cfg)

    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == metrics
    assert set(metrics) == set(cf.Metrics.model_fields)
    assert metrics["status"] == "completed" and metrics["stopped_step"] is None
    assert (metrics["cell_id"], metrics["variant"], metrics["n_streams"]) == (cid, residual, n)
    assert metrics["steps_done"] == 30 and metrics["tokens_seen"] == 30 * 4 * 32
    for key in cf.Metrics.model_fields:
        # None where a probe does not apply: no H_res logits (baseline, HC), no Sinkhorn (all but mHC)
        absent = ("max_logit_span", "peak_max_logit_span", "max_sinkhorn_iters_needed")
        if key in absent and metrics[key] is None:
            continue
        if key not in ("stopped_step", "stop_reason", "spike_steps") and not isinstance(
                metrics[key], str | dict):
            assert isinstance(metrics[key], int | float) and math.isfinite(metrics[key]), key
    assert metrics["execution"]["kernels"] == "auto" and metrics["execution"]["num_threads"] == 1
    assert metrics["kernel_paths"] == ("x + F(x)" if residual == "baseline" else "maps=fast streams=fast")
    assert metrics["final_val_loss"] < math.log(257)  # learned something beyond uniform guessing
    assert metrics["final_val_ppl"] == pytest.approx(math.exp(metrics["final_val_loss"]))
    if residual == "baseline":
        assert metrics["max_composite_fwd"] == 1.0 and metrics["max_grad_norm_maps"] == 0.0
    if residual == "mhc":
        assert metrics["max_composite_fwd"] == pytest.approx(1.0, abs=1e-3)  # doubly stochastic
        assert metrics["max_sinkhorn_iters_needed"] >= 1 and metrics["max_logit_span"] > 0
    for name in ("config.yaml", "model.safetensors", "tokenizer.json", "history.json", "gains.json",
                 "run.json", "checkpoints/last.ckpt", "gains_per_layer.png", "gains_over_steps.png"):
        assert (out / name).is_file(), name

    history = json.loads((out / "history.json").read_text())
    assert [h["step"] for h in history] == [10, 20, 30]
    assert all(h["val_loss"] is not None and h["train_loss"] > 0 for h in history)
    assert history[-1]["train_loss"] == metrics["final_train_loss"]
    gains = json.loads((out / "gains.json").read_text())
    assert len(gains["composite_fwd"]) == 2 * cfg.model.n_layer

    # config.yaml is the resolved config: vocab from the data, same cell id and hash
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["model"]["vocab_size"] == 257 and resolved["resolved"]["cell_id"] == cid
    model, loaded_cfg = load_trained_model(out)
    assert cell_id(loaded_cfg) == cid and config_hash(loaded_cfg) == metrics["config_hash"]
    from mhc_bench.data import prepare_data

    batches = eval_batches(prepare_data(loaded_cfg.data).val_bin, 32, 4, 2)
    with torch.no_grad():
        val = sum(float(model(x, y)[1]) for x, y in batches) / len(batches)
    assert val == pytest.approx(metrics["final_val_loss"], abs=1e-6)

    run = client(store).get_run(metrics["mlflow_run_id"])
    assert run.info.run_name == cid and run.info.status == "FINISHED"
    assert run.data.params["model.mixing.kind"] == residual and run.data.params["train.lr"] == "0.003"
    assert run.data.tags["config_hash"] == metrics["config_hash"] and run.data.tags["n"] == str(n)
    for tag in ("git_sha", "hardware", "torch_version", "lightning_version", "mlflow_version",
                "torch_threads"):
        assert run.data.tags[tag], tag
    assert run.data.metrics["final/final_val_loss"] == pytest.approx(metrics["final_val_loss"])
    steps = [m.step for m in client(store).get_metric_history(run.info.run_id, "gain/max_composite_fwd")]
    assert steps == [10, 20, 30]
    assert client(store).get_metric_history(run.info.run_id, "val/loss")
    artifacts = {a.path for a in client(store).list_artifacts(run.info.run_id)}
    assert {"metrics.json", "config.yaml", "history.json", "gains.json", "gains_per_layer.png",
            "gains_over_steps.png"} <= artifacts


def test_same_config_is_deterministic_and_a_finished_cell_is_not_retrained(
    store: Path, tmp_path: Path, trained_mhc: tuple[Any, Path, dict], capsys: pytest.CaptureFixture
) -> None:
    cfg, out, first = trained_mhc
    second = train_cell(cfg, tmp_path / "again")
    for key in ("final_train_loss", "final_val_loss", "max_grad_norm", "max_grad_norm_maps",
                "max_composite_fwd", "max_composite_bwd", "min_composite_min_col", "n_params"):
        assert second[key] == first[key], key
    h1 = json.loads((out / "history.json").read_text())
    h2 = json.loads((tmp_path / "again" / "history.json").read_text())
    for a, b in zip(h1, h2, strict=True):
        assert (a["train_loss"], a["val_loss"], a["max_composite_fwd"]) == (
            b["train_loss"], b["val_loss"], b["max_composite_fwd"])

    n_runs, mtime = len(runs_named(store, cell_id(cfg))), (out / "metrics.json").stat().st_mtime_ns
    config = _write(tmp_path / "c.yaml", tiny(store))
    assert cli.main(["train", "--config", str(config), "--out", str(out)]) == 0
    assert "already finished (completed)" in capsys.readouterr().out
    assert (out / "metrics.json").stat().st_mtime_ns == mtime
    assert len(runs_named(store, cell_id(cfg))) == n_runs


def test_hc_with_huge_lr_diverges_cleanly(store: Path, tmp_path: Path) -> None:
    raw = tiny(store, "hc", 2, lr=10.0, grad_clip=0.0, warmup_steps=0, probe_every=5)
    out = tmp_path / "hc-div"
    assert cli.main(["train", "--config", str(_write(tmp_path / "c.yaml", raw)), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "diverged"
    assert metrics["stopped_step"] == metrics["steps_done"] < 30
    assert "non-finite" in metrics["stop_reason"] or "exploded" in metrics["stop_reason"]
    run = client(store).get_run(metrics["mlflow_run_id"])
    assert run.data.tags["status"] == "diverged"


def test_the_gain_ceiling_stops_a_cell_without_calling_it_diverged(store: Path, tmp_path: Path) -> None:
    """A composite gain above train.gain_ceiling is a probe reading: the cell is 'stopped', not 'diverged'."""
    raw = tiny(store, "hc", 2, lr=3e-2, grad_clip=0.0, warmup_steps=0, probe_every=5, gain_ceiling=1.0 + 1e-9)
    out = tmp_path / "hc-ceiling"
    assert cli.main(["train", "--config", str(_write(tmp_path / "c.yaml", raw)), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "stopped" and "gain_ceiling" in metrics["stop_reason"]
    assert metrics["stopped_step"] == metrics["steps_done"] < 30


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(("section", "key", "value", "named"), [
    ("train", "learning_rate", 1e-3, "train.learning_rate"),  # unknown key
    ("train", "steps", "many", "train.steps"),  # wrong type
    ("train", "lr", -1.0, "train.lr"),  # impossible value
    ("model", "n_streams", 0, "model.n_streams"),
    ("model", "n_head", 3, "model.d_model"),  # 32 % 3: cross-field rule of ModelConfig
    ("model", "vocab_size", 100, "model.vocab_size"),  # below the data's 257: found after data prep
])
def test_bad_config_fails_naming_the_key_and_writes_nothing(
    section: str, key: str, value: Any, named: str, store: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture
) -> None:
    raw = tiny(store)
    raw[section][key] = value
    out = tmp_path / "never"
    assert cli.main(["train", "--config", str(_write(tmp_path / "bad.yaml", raw)), "--out", str(out)]) == 2
    assert named in capsys.readouterr().err
    assert not out.exists()


def test_unknown_top_level_key_and_non_mapping_are_rejected() -> None:
    with pytest.raises(ConfigError, match="optimizer"):
        parse_cell_config({"optimizer": {}})
    with pytest.raises(ConfigError, match="mapping"):
        parse_cell_config([1, 2])  # type: ignore[arg-type]


def test_cell_id_is_readable_and_ignores_tracking_and_labels(store: Path) -> None:
    a = parse_cell_config(tiny(store))
    b = parse_cell_config({**tiny(Path("/elsewhere")), "name": "x", "profile": "cpu"})
    c = parse_cell_config(tiny(store, seed=1))
    lr = f"lr{a.train.lr:.0e}"
    # mHC's default init reads in the id (it is measured against the default before it, megatron)
    assert cell_id(a) == cell_id(b) and cell_id(a).startswith(f"mhc-n2-d32-b2-init-onehot-{lr}-s0-")
    assert cell_id(c).startswith(f"mhc-n2-d32-b2-init-onehot-{lr}-s1-") and config_hash(c) != config_hash(a)
    mixing = {"kind": "mhc", "maps": ["res", "pre"], "init": "megatron"}
    ablation = parse_cell_config({**tiny(store), "model": {**tiny(store)["model"], "mixing": mixing}})
    assert cell_id(ablation).startswith(f"mhc-n2-d32-b2-res+pre-{lr}-s0-")


def test_lr_schedules_warm_up_then_decay() -> None:
    cosine = lr_multiplier(parse_cell_config({"train": {"steps": 100, "warmup_steps": 10}}).train)
    assert cosine(0) == pytest.approx(0.1) and cosine(9) == pytest.approx(1.0)
    assert cosine(99) == pytest.approx(0.1) and cosine(50) < cosine(20)
    raw = {"train": {"steps": 100, "warmup_steps": 0, "schedule": "step"}}
    step = lr_multiplier(parse_cell_config(raw).train)
    assert (step(79), step(80), step(90)) == pytest.approx((1.0, 0.316, 0.316**2))


def test_weight_decay_hits_matrices_but_not_static_maps_or_gates() -> None:
    from mhc_bench.model import GPT, ModelConfig

    for residual in ("mhc", "hc"):
        model = GPT(ModelConfig.of(residual, vocab_size=20, n_layer=1, d_model=8, n_head=2, seq_len=4,
                                n_streams=2))
        spec = model.cfg.spec
        decayed = {name for name, p in model.named_parameters() if uses_weight_decay(name, p, spec, True)}
        assert "layers.0.fn.inner.qkv.weight" in decayed and "wte.weight" in decayed
        assert any(name.endswith((".phi", ".w")) for name in decayed)
        static = ("b_res", "s_res", "alpha", "scale", "norm")
        assert not any(part in name for name in decayed for part in static)
        no_proj = {name for name, p in model.named_parameters() if uses_weight_decay(name, p, spec, False)}
        assert not any(name.endswith((".phi", ".w")) for name in no_proj)


def test_ddp_with_two_cpu_processes_over_gloo(store: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    raw = tiny(store, steps=10, probe_every=5, val_every=5, ckpt_every=5, devices=2, strategy="ddp",
               accelerator="cpu")
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "mhc_bench.cli", "train", "--config", str(_write(tmp_path / "c.yaml", raw)),
           "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["steps_done"] == 10
    assert metrics["tokens_seen"] == 10 * 4 * 32 * 2  # two ranks, each with its own batch
    assert len(runs_named(store, metrics["cell_id"])) == 1  # rank 1 attached to rank 0's run


def test_probe_command_recomputes_stale_gains_from_the_saved_model(
    trained_mhc: tuple[Any, Path, dict], tmp_path: Path
) -> None:
    """A cell probed under an older definition is re-probed from its weights, no retraining."""
    import shutil

    from mhc_bench.probes import PROBE_VERSION

    _, out, metrics = trained_mhc
    cell = tmp_path / "stale"
    shutil.copytree(out, cell)
    stale = {**metrics, "probe_version": 1, "max_composite_fwd": 123.0, "max_prefix_fwd": None}
    (cell / "metrics.json").write_text(json.dumps(stale))
    (cell / "gains.json").unlink()
    assert cli.main(["probe", "--cell", str(cell)]) == 0
    fresh = json.loads((cell / "metrics.json").read_text())
    assert fresh["probe_version"] == PROBE_VERSION
    for key in ("max_composite_fwd", "max_composite_bwd", "max_prefix_fwd", "max_stream_spread"):
        assert fresh[key] == pytest.approx(metrics[key], rel=1e-9), key
    gains = json.loads((cell / "gains.json").read_text())
    assert gains["max_composite_fwd"] == fresh["max_composite_fwd"]


def test_probe_command_refuses_a_cell_without_weights(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["probe", "--cell", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "has no metrics.json: the cell was never trained" in err and err.count("\n") == 1
