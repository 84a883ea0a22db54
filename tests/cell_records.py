"""Cell folders for tests, written through the cell folder contract's own writers.

Tests that need a finished cell without training one (the report, evaluation) build it
here, so every file they read is in the format the product writes (no hand-made variants).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import yaml

from mhc_bench import cellfolder as cf
from mhc_bench.cellconfig import cell_id, config_hash, parse_cell_config
from mhc_bench.definitions import PROBE_VERSION
from mhc_bench.model import ModelConfig

CORPUS = Path(__file__).parent / "fixtures" / "corpus"


def cell_config(variant: str = "mhc", n: int = 4, seed: int = 0, maps: list[str] | None = None,
                d_model: int = 64, n_layer: int = 2, lr: float = 1e-3, steps: int = 100, seq_len: int = 32,
                profile: str = "quick", tracking_uri: str | None = None, experiments: list[str] | None = None,
                grad_clip: float | None = None, mix_weight: float = 0.0, **model: Any) -> Any:
    """A valid ``CellConfig`` (byte tokenizer on the fixture corpus); ``experiments`` are the profile's
    experiments the cell serves (labels: they do not change the cell id)."""
    train: dict[str, Any] = {"lr": lr, "seed": seed, "steps": steps, "batch_size": 8}
    if grad_clip is not None:
        train["grad_clip"] = grad_clip
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    mixing = {"kind": variant, **{k: v for k, v in model.items() if k not in fields}}
    if variant != "baseline":
        mixing["maps"] = list(maps) if maps is not None else ["res", "pre", "post"]
    return parse_cell_config({
        "profile": profile,
        "experiments": list(experiments or []),
        "model": {"mixing": mixing, "n_streams": n, "d_model": d_model, "n_layer": n_layer, "n_head": 2,
                  "seq_len": seq_len, "vocab_size": 257, **{k: v for k, v in model.items() if k in fields}},
        "data": {"corpus": str(CORPUS), "tokenizer": "char", "mix_weight": mix_weight},
        "train": train,
        "tracking": {"tracking_uri": tracking_uri, "experiment": profile},
    })


def metrics_record(cfg: Any, **overrides: Any) -> cf.Metrics:
    """A completed cell's metrics with ideal gains; ``overrides`` set any field."""
    unit = 1.0
    values: dict[str, Any] = {
        "cell_id": cell_id(cfg), "status": "completed", "steps_done": cfg.train.steps,
        "final_train_loss": 3.0, "final_val_loss": 3.0, "final_val_ppl": math.exp(3.0),
        "tokens_seen": cfg.train.steps * cfg.train.batch_size * cfg.model.seq_len, "wall_time_s": 1.0,
        "tokens_per_s": 5120.0, "step_time_ms": 10.0, "peak_mem_mb": 200.0,
        "max_single_fwd": unit, "max_single_bwd": unit, "max_composite_fwd": unit, "max_composite_bwd": unit,
        "layer0_fwd": unit, "layer0_bwd": unit, "min_composite_min_col": unit, "max_prefix_fwd": unit,
        "max_stream_spread": 0.0 if cfg.model.n_streams == 1 else 0.2,
        "final_stream_spread": 0.0 if cfg.model.n_streams == 1 else 0.1, "probe_version": PROBE_VERSION,
        "max_grad_norm": 1.5, "max_grad_norm_maps": 0.0 if cfg.model.variant == "baseline" else 0.2,
        "spike_count": 0, "n_params": 100000, "mlflow_run_id": None, "mlflow_tracking_uri": None,
        "mlflow_experiment": cfg.tracking.experiment, "config_hash": config_hash(cfg),
        "variant": cfg.model.variant, "n_streams": cfg.model.n_streams, "seed": cfg.train.seed,
    }
    values.update(overrides)
    if "final_val_loss" in overrides and "final_val_ppl" not in overrides:
        loss = overrides["final_val_loss"]
        values["final_val_ppl"] = None if loss is None else math.exp(loss)
    return cf.Metrics.model_validate(values)


def gains_record(metrics: cf.Metrics, layers: int, single_fwd: list[float | None] | None = None
                 ) -> dict[str, Any]:
    """Per-layer gains consistent with the metrics' maxima (the largest at layer 0); ``single_fwd``
    sets each layer's single forward gain (None: not finite)."""
    top = metrics.max_composite_fwd or 1.0
    shape = [1.0 - i / layers for i in range(layers)]
    lists = {
        "single_fwd": list(single_fwd) if single_fwd is not None else [metrics.max_single_fwd] * layers,
        "single_bwd": [metrics.max_single_bwd] * layers,
        "single_min_col": [1.0] * layers, "single_max_abs_log_col": [0.0] * layers,
        "composite_fwd": [1.0 + (top - 1.0) * s for s in shape],
        "composite_bwd": [metrics.max_composite_bwd] * layers,
        "composite_min_col": [metrics.min_composite_min_col] * layers,
        "composite_max_abs_log_col": [0.0] * layers,
        "prefix_fwd": [1.0 + (top - 1.0) * s for s in reversed(shape)],
        "stream_spread": [metrics.final_stream_spread] * layers,
        "col_err": [0.0] * layers, "logit_span": [None] * layers, "sinkhorn_iters_needed": [None] * layers,
    }
    scalars = {f"max_{k}": max((x for x in v if x is not None), default=None) for k, v in lists.items()
               if k in ("single_fwd", "single_bwd", "composite_fwd", "composite_bwd", "prefix_fwd",
                        "single_max_abs_log_col", "composite_max_abs_log_col")}
    return {**lists, **scalars, "min_single_min_col": 1.0,
            "min_composite_min_col": metrics.min_composite_min_col, "layer0_fwd": metrics.layer0_fwd,
            "layer0_bwd": metrics.layer0_bwd, "max_stream_spread": metrics.max_stream_spread,
            "final_stream_spread": metrics.final_stream_spread, "max_col_err": 0.0, "max_logit_span": None,
            "max_sinkhorn_iters_needed": None, "probe_version": metrics.probe_version}


def write_cell(root: Path, cfg: Any, metrics: cf.Metrics | None, history: list[dict[str, Any]] | None = None,
               trained: bool = True, single_fwd: list[float | None] | None = None) -> Path:
    """``root/<cell id>`` with cell.yaml, and when ``trained`` config.yaml, metrics, history, gains
    (``single_fwd``: the final model's per-layer single forward gains, see :func:`gains_record`)."""
    folder = Path(root) / cell_id(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / cf.CELL_YAML).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    if not trained or metrics is None:
        return folder
    (folder / cf.CONFIG).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    cf.write_metrics(folder, metrics)
    cf.write_history(folder, history or [])
    cf.write_gains(folder, gains_record(metrics, 2 * cfg.model.n_layer, single_fwd))
    return folder


def eval_record(cell: str, scores: dict[str, tuple[str, float, float | None, float | None]],
                status: str = "completed", reason: str | None = None) -> cf.EvalRecord:
    """``scores``: suite -> (metric, value, stderr, chance); each suite is one group row."""
    results = {suite: {"kind": "group", "group": None, "n": 400, "chance": chance,
                       "metrics": {metric: {"value": value, "stderr": stderr}}}
               for suite, (metric, value, stderr, chance) in scores.items()}
    return cf.EvalRecord(status=status, reason=reason, complete=True, cell=cell, task_config_hash="0" * 64,
                         tasks=sorted(scores), limit=None, batch_size=16, lm_eval_version="0.4.13",
                         seeds={"random_seed": 0}, results=results)
