"""``train_cell``: prepare data, train one cell with Lightning, write its files, mirror them to MLflow.

Re-running a cell is safe: a cell with a final ``metrics.json`` returns at once;
a cell with ``checkpoints/last.ckpt`` resumes from it, in the same MLflow run.
With ``strategy: ddp`` Lightning re-executes the command for the other ranks;
those find the run id in ``run.json`` (written by rank 0 before training starts)
and write no files.
"""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

from mhc_bench.paths import PROJECT_ROOT, configure_environment
from mhc_bench.train import artifacts as art
from mhc_bench.train.config import (
    CellConfig,
    ConfigError,
    TrainSection,
    cell_id,
    config_hash,
    parse_cell_config,
)


def default_cell_dir(cfg: CellConfig) -> Path:
    return PROJECT_ROOT / "results" / "cells" / cell_id(cfg)


def resolve_config(cfg: CellConfig, prepared: Any, cid: str, chash: str) -> CellConfig:
    """The config as trained: vocab size from the data, absolute corpus path, the store used."""
    data = cfg.model_dump(mode="json")
    vocab_from_data = data["model"]["vocab_size"] is None
    if vocab_from_data:
        data["model"]["vocab_size"] = prepared.vocab_size
    elif data["model"]["vocab_size"] < prepared.vocab_size:
        raise ConfigError(f"model.vocab_size: {data['model']['vocab_size']} is smaller than the data's "
                          f"vocabulary ({prepared.vocab_size}); leave it null to take the data's")
    if Path(cfg.data.corpus).expanduser().is_dir():
        data["data"]["corpus"] = str(Path(cfg.data.corpus).expanduser().resolve())
    data["tracking"]["tracking_uri"] = cfg.tracking.resolved_uri()
    data["resolved"] = {"cell_id": cid, "config_hash": chash, "vocab_from_data": vocab_from_data,
                        "data_dir": str(prepared.dir), "tokenizer_path": str(prepared.tokenizer_path),
                        "data_fingerprint": prepared.fingerprint}
    resolved = parse_cell_config(data)
    assert config_hash(resolved) == chash, "resolving the config must not change its hash"
    return resolved


def _is_rank_zero() -> bool:
    """True in the launching process; Lightning's DDP launcher sets these for the ranks it starts."""
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


def _quiet_lightning() -> None:
    for pattern in (".*does not have many workers.*", ".*IterableDataset.*", ".*resuming from a checkpoint.*",
                    ".*Total length of .* across ranks.*",
                    ".*sync_dist=True.*"):  # val/loss comes from a MeanMetric, which syncs itself
        warnings.filterwarnings("ignore", message=pattern)


def _progress_bar() -> bool:
    return sys.stdout.isatty() and not os.environ.get("CI")


def _make_trainer(train: TrainSection, cell_dir: Path, logger: Any, monitor: Any, use_gpu: bool) -> Any:
    """The Lightning Trainer of a cell: step-based (endless stream), ``last.ckpt`` every ``ckpt_every``."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    checkpoint = ModelCheckpoint(dirpath=cell_dir / art.CHECKPOINT.parent, save_last=True, save_top_k=0,
                                 every_n_train_steps=train.ckpt_every, enable_version_counter=False)
    return L.Trainer(
        accelerator="gpu" if use_gpu else "cpu", devices=train.devices, strategy=train.strategy,
        precision=train.precision, max_steps=train.steps, max_epochs=-1,
        val_check_interval=train.val_every, check_val_every_n_epoch=None, num_sanity_val_steps=0,
        gradient_clip_val=train.grad_clip or None, gradient_clip_algorithm="norm",
        logger=logger, callbacks=[monitor, checkpoint],
        log_every_n_steps=min(50, train.probe_every),
        enable_progress_bar=_progress_bar(), enable_model_summary=False, use_distributed_sampler=False,
        # Bit-exact reruns and resumes on CPU; on GPU the deterministic kernels cost too much speed.
        deterministic=not use_gpu, default_root_dir=cell_dir,
    )


def train_cell(cfg: CellConfig, out_dir: str | Path | None = None, data_root: Path | None = None) -> dict:
    """Train (or resume, or skip) one cell; returns its metrics (``{}`` on ranks other than 0)."""
    configure_environment()
    cid, chash = cell_id(cfg), config_hash(cfg)
    cell_dir = Path(out_dir) if out_dir is not None else default_cell_dir(cfg)
    done = art.finished_metrics(cell_dir)
    if done is not None:
        print(f"{cid}: already finished ({done['status']}) in {cell_dir}; not retraining")
        return done

    import lightning as L
    import torch

    from mhc_bench.data import prepare_data
    from mhc_bench.data.epochs import warn_if_repeating
    from mhc_bench.train.data import TokenDataModule
    from mhc_bench.train.module import GPTModule
    from mhc_bench.train.monitor import TrainingMonitor
    from mhc_bench.train.tracking import ensure_run, load_run_ref, make_logger

    _quiet_lightning()
    train = cfg.train
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    threads_before = torch.get_num_threads()
    try:
        if train.num_threads:
            torch.set_num_threads(train.num_threads)
        prepared = prepare_data(cfg.data, root=data_root)
        tokens_per_step = train.batch_size * cfg.model.seq_len * train.devices
        warn_if_repeating(cid, train.steps * tokens_per_step, prepared.train_tokens(), cfg.data.max_epochs)
        resolved = resolve_config(cfg, prepared, cid, chash)
        if _is_rank_zero():
            cell_dir.mkdir(parents=True, exist_ok=True)
            art.write_config(cell_dir / art.CONFIG, resolved)
            shutil.copyfile(prepared.tokenizer_path, cell_dir / art.TOKENIZER)
            ref = ensure_run(resolved, cell_dir, cid, chash)
        else:
            ref = load_run_ref(cell_dir)
            if ref is None:
                raise RuntimeError(f"no {cell_dir / 'run.json'}: rank 0 writes it before starting the others")

        L.seed_everything(train.seed, workers=True, verbose=False)
        module = GPTModule(resolved.model.to_model_config(), train)
        datamodule = TokenDataModule(prepared.train_bin, prepared.val_bin, resolved.model.seq_len,
                                     train.batch_size, train.val_batches, train.seed)
        use_gpu = train.accelerator == "gpu" or (train.accelerator == "auto" and torch.cuda.is_available())
        monitor = TrainingMonitor(train, datamodule.probe_batch(), tokens_per_step)
        trainer = _make_trainer(train, cell_dir, make_logger(ref), monitor, use_gpu)
        last = cell_dir / art.CHECKPOINT
        if last.exists() and _is_rank_zero():
            print(f"{cid}: resuming from {last}")
        trainer.fit(module, datamodule=datamodule, ckpt_path=last if last.exists() else None,
                    weights_only=True)
        if not trainer.is_global_zero:
            return {}
        from mhc_bench.train.finalize import finalize_cell

        return finalize_cell(resolved, cell_dir, ref, trainer, module, datamodule, monitor)
    finally:  # leave the process as we found it (tests and notebooks train several cells)
        torch.use_deterministic_algorithms(deterministic_before)
        torch.set_num_threads(threads_before)
