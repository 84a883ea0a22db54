"""``mhc-bench probe --cell DIR [DIR ...]``: recompute a trained cell's stability probes from its model.

When a probe definition changes (``mhc_bench.probes.PROBE_VERSION``) finished cells need
no retraining: the final weights are in ``model.safetensors`` (``mhc-bench cell <id>
--keep-weights`` regenerates them for committed cells) and the probe batch is a fixed
function of the data and the config. The final gains (``gains.json``, the gain keys of
``metrics.json``, the per-layer plot, MLflow's ``final/*``) are rewritten. Probes taken
*during* training cannot be recomputed: history entries keep the version they were
measured with, peaks taken from stale entries are dropped, and the report shows only
current ones, so old and new definitions are never mixed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mhc_bench import cellfolder as cf
from mhc_bench import tracking
from mhc_bench.trained import load_trained_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cell", nargs="+", required=True, type=Path, metavar="DIR",
                        help="finished cell folder(s) (results/<profile>/cells/<cell id>)")


def reprobe_cell(cell_dir: Path) -> cf.Metrics:
    """Re-probe one finished cell in place; returns its updated metrics."""
    from mhc_bench.data import prepare_data
    from mhc_bench.probes import PROBE_VERSION, probe_model
    from mhc_bench.train.data import probe_batch
    from mhc_bench.train.plots import plot_gains_per_layer

    model, cfg = load_trained_model(cell_dir)
    metrics = cf.require_finished(cell_dir)
    prepared = prepare_data(cfg.data)
    idx = probe_batch(prepared.val_bin, cfg.model.seq_len, cfg.train.batch_size, cfg.train.val_batches)
    gains = probe_model(model, idx, final=True)
    cf.write_gains(cell_dir, gains)
    updates: dict[str, Any] = {k: gains[k] for k in cf.GAIN_METRICS}
    history = cf.read_history(cell_dir)
    for key in cf.PEAK_GAINS:
        current = [getattr(h, key) for h in history
                   if h.probe_version == PROBE_VERSION and getattr(h, key) is not None]
        updates[f"peak_{key}"] = max(current) if current else None
    metrics = metrics.model_copy(update=cf.finite_or_none(updates))
    cf.write_metrics(cell_dir, metrics)
    plot_gains_per_layer(gains, f"{metrics.cell_id} (step {metrics.steps_done}, re-probed)",
                         cell_dir / "gains_per_layer.png")
    ref = tracking.cell_run(metrics)
    if ref is not None:  # the final/* points are replaced, never logged twice (mhc_bench.train.mirror)
        from mhc_bench.train.mirror import final_points, final_tags

        tracking.log_points(ref, final_points(metrics), tags=final_tags(metrics))
    return metrics


def run(args: argparse.Namespace) -> int:
    for cell_dir in args.cell:
        metrics = reprobe_cell(cell_dir)
        print(f"{metrics.cell_id}: max composite fwd {metrics.max_composite_fwd:.4g} (suffix Q_l), "
              f"bwd {metrics.max_composite_bwd:.4g}; probe version {metrics.probe_version}")
    return 0
