"""``mhc-bench probe --cell DIR [DIR ...]``: recompute a trained cell's stability probes from its model.

When a probe definition changes (``mhc_bench.probes.PROBE_VERSION``) finished cells need
no retraining: the final weights are in ``model.pt`` and the probe batch is a fixed
function of the data and the config. The final gains (``gains.json``, the gain keys of
``metrics.json``, the per-layer plot, MLflow's ``final/*``) are rewritten. Probes taken
*during* training cannot be recomputed: history entries keep the version they were
measured with, peaks taken from stale entries are dropped, and the report shows only
current ones, so old and new definitions are never mixed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cell", nargs="+", required=True, type=Path, metavar="DIR",
                        help="finished cell folder(s) (results/<profile>/cells/<cell id>)")


def reprobe_cell(cell_dir: Path) -> dict[str, Any]:
    """Re-probe one finished cell in place; returns its updated metrics."""
    from mhc_bench.data import prepare_data
    from mhc_bench.probes import PROBE_VERSION, probe_model
    from mhc_bench.train import artifacts as art
    from mhc_bench.train.data import probe_batch
    from mhc_bench.train.plots import plot_gains_per_layer
    from mhc_bench.train.tracking import RunRef, log_reprobe

    metrics = art.finished_metrics(cell_dir)
    if metrics is None:
        raise FileNotFoundError(f"{cell_dir}: no finished {art.METRICS} (train the cell first)")
    if not (cell_dir / art.MODEL).exists():
        raise FileNotFoundError(f"{cell_dir / art.MODEL} is missing: re-probing needs the trained weights "
                                "(committed results do not carry them); retrain the cell instead")
    model, cfg = art.load_trained_cell(cell_dir)
    prepared = prepare_data(cfg.data)
    idx = probe_batch(prepared.val_bin, cfg.model.seq_len, cfg.train.batch_size, cfg.train.val_batches)
    gains = probe_model(model, idx)
    art.write_json(cell_dir / art.GAINS, gains)
    metrics.update({k: gains[k] for k in art.GAIN_METRICS_KEYS})
    history = art.read_json(cell_dir / art.HISTORY) or []
    for key in art.PEAK_KEYS:
        current = [h[key] for h in history
                   if h.get("probe_version") == PROBE_VERSION and h.get(key) is not None]
        metrics[f"peak_{key}"] = max(current) if current else None
    art.write_json(cell_dir / art.METRICS, metrics)
    plot_gains_per_layer(gains, f"{metrics['cell_id']} (step {metrics['steps_done']}, re-probed)",
                         cell_dir / "gains_per_layer.png")
    if metrics.get("mlflow_run_id") and metrics.get("mlflow_tracking_uri"):
        ref = RunRef(metrics["mlflow_run_id"], metrics["mlflow_tracking_uri"],
                     metrics.get("mlflow_experiment") or "", "")
        scalars = {k: gains[k] for k in art.GAIN_METRICS_KEYS if k != "probe_version"}
        log_reprobe(ref, scalars, int(metrics["steps_done"]), PROBE_VERSION)
    return metrics


def run(args: argparse.Namespace) -> int:
    status = 0
    for cell_dir in args.cell:
        try:
            metrics = reprobe_cell(cell_dir)
        except (FileNotFoundError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            status = 2
            continue
        print(f"{metrics['cell_id']}: max composite fwd {metrics['max_composite_fwd']:.4g} (suffix Q_l), "
              f"bwd {metrics['max_composite_bwd']:.4g}; probe version {metrics['probe_version']}")
    return status
