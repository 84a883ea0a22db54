"""The files a trained cell leaves behind, and loading them back.

``metrics.json`` is the source of truth the evaluation and report read (MLflow
mirrors it); its key set is a contract, see ``METRICS_KEYS``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import yaml

from mhc_bench.model import GPT
from mhc_bench.train.config import CellConfig, load_cell_config

METRICS = "metrics.json"
CONFIG = "config.yaml"
MODEL = "model.pt"
TOKENIZER = "tokenizer.json"
HISTORY = "history.json"
GAINS = "gains.json"
CHECKPOINT = Path("checkpoints") / "last.ckpt"
FINAL_STATUSES = ("completed", "diverged")

# The final model's probe values copied into metrics.json (definitions: mhc_bench.probes).
GAIN_METRICS_KEYS = (
    "max_single_fwd", "max_single_bwd", "max_composite_fwd", "max_composite_bwd", "layer0_fwd",
    "layer0_bwd", "min_composite_min_col", "max_prefix_fwd", "max_stream_spread", "final_stream_spread",
    "probe_version",
)
# Gains whose maximum over the training probes is kept as ``peak_<key>`` in metrics.json.
PEAK_KEYS = ("max_composite_fwd", "max_composite_bwd", "max_prefix_fwd")
METRICS_KEYS = (
    "cell_id", "status", "diverged_step", "diverged_reason", "steps_done", "final_train_loss",
    "final_val_loss", "final_val_ppl", "tokens_seen", "wall_time_s", "tokens_per_s", "step_time_ms",
    "peak_mem_mb", *GAIN_METRICS_KEYS, "max_grad_norm", "max_grad_norm_maps",
    "spike_count", "n_params", "mlflow_run_id", "mlflow_tracking_uri", "mlflow_experiment",
    "config_hash", "variant", "n_streams", "seed",
)


def finite_or_none(value: Any) -> Any:
    """JSON has no NaN/inf: non-finite floats become null (recursively)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    return value


def write_json(path: Path, data: Any) -> Path:
    """Write atomically (temp file + rename): a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(finite_or_none(data), indent=2, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def read_json(path: Path) -> Any:
    """The parsed file, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def write_config(path: Path, cfg: CellConfig) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    tmp.replace(path)
    return path


def finished_metrics(cell_dir: Path) -> dict[str, Any] | None:
    """The cell's metrics if it has finished (completed or diverged), else None."""
    try:
        metrics = json.loads((Path(cell_dir) / METRICS).read_text())
    except (OSError, ValueError):
        return None
    return metrics if metrics.get("status") in FINAL_STATUSES else None


def load_trained_cell(
    cell_dir: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[GPT, CellConfig]:
    """The trained model (eval mode) and its resolved config, loaded with ``weights_only=True``."""
    cell_dir = Path(cell_dir)
    cfg = load_cell_config(cell_dir / CONFIG)
    model = GPT(cfg.model.to_model_config())
    state = torch.load(cell_dir / MODEL, map_location=map_location, weights_only=True)
    model.load_state_dict(state)
    return model.eval(), cfg
