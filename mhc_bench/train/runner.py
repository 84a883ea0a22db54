"""``train_cell``: prepare data, train one cell with Lightning, write its files, mirror them to MLflow.

Re-running a cell is safe: a cell with a final ``metrics.json`` returns at once;
a cell with ``checkpoints/last.ckpt`` resumes from it, in the same MLflow run, and one
killed before its first checkpoint starts again in that run too (the points it logged are
not logged twice). Two processes training the same cell folder at once are refused: the
second says so in one line (``checkpoints/train.lock``). With ``strategy: ddp`` Lightning
re-executes the command for the other ranks; those find the run id in ``run.json``
(written by rank 0 before training starts) and write no files. Everything that can be
checked before training (data long enough for ``seq_len``, a writable results folder, a
healthy MLflow store) is checked before the cell folder or an MLflow run exists; a run
that fails later is marked ``FAILED``, and a full disk is one line.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mhc_bench import cellfolder as cf
from mhc_bench import tracking
from mhc_bench.cellconfig import (
    CellConfig,
    ConfigError,
    TrainSection,
    cell_id,
    config_hash,
    parse_cell_config,
)
from mhc_bench.errors import UserError
from mhc_bench.heap import keep_freed_memory
from mhc_bench.paths import PROJECT_ROOT, configure_environment


def default_cell_dir(cfg: CellConfig) -> Path:
    return PROJECT_ROOT / "results" / "cells" / cell_id(cfg)


def store_uri(cfg: CellConfig, cell_dir: Path) -> str:
    """The cell's MLflow store: the one rule of :func:`mhc_bench.tracking.resolve_uri`, with the
    default ``mlflow.db`` next to the ``cells/`` folder holding this cell."""
    return tracking.resolve_uri(cfg.tracking.tracking_uri, Path(cell_dir).parent.parent)


def resolve_config(cfg: CellConfig, prepared: Any, cid: str, chash: str, uri: str) -> CellConfig:
    """The config as trained: vocab size from the data, the store used, the data fingerprint."""
    data = cfg.model_dump(mode="json")
    vocab_from_data = data["model"]["vocab_size"] is None
    if vocab_from_data:
        data["model"]["vocab_size"] = prepared.vocab_size
    elif data["model"]["vocab_size"] < prepared.vocab_size:
        raise ConfigError(f"model.vocab_size: {data['model']['vocab_size']} is smaller than the data's "
                          f"vocabulary ({prepared.vocab_size}); leave it null to take the data's")
    data["tracking"]["tracking_uri"] = uri
    data["resolved"] = {"cell_id": cid, "config_hash": chash, "vocab_from_data": vocab_from_data,
                        "data_fingerprint": prepared.fingerprint}
    resolved = parse_cell_config(data)
    assert config_hash(resolved) == chash, "resolving the config must not change its hash"
    return resolved


def check_data_fits(cfg: CellConfig, prepared: Any) -> None:
    """Fail before any folder or run exists when a split is too short for ``seq_len``."""
    import numpy as np

    need = cfg.model.seq_len + 2
    for split, path in (("train", prepared.train_bin), ("validation", prepared.val_bin)):
        tokens = len(np.memmap(path, dtype=np.uint16, mode="r"))
        if tokens < need:
            raise ConfigError(f"model.seq_len: {cfg.model.seq_len} needs at least {need} tokens in the "
                              f"{split} split, which has {tokens}; lower seq_len or use more data")


def check_writable(cell_dir: Path) -> None:
    """A read-only results folder is a user error, said before any compute."""
    existing = next(p for p in (cell_dir, *cell_dir.parents) if p.exists())
    if not os.access(existing, os.W_OK):
        raise UserError(f"cannot write the cell folder {cell_dir}: {existing} is not writable; "
                        "pass --out to a writable folder or fix the permissions")


def run_tags(cfg: CellConfig, cid: str, chash: str) -> dict[str, str]:
    import torch

    from mhc_bench.provenance import git_sha, hardware, versions

    return {
        "cell_id": cid, "config_hash": chash, "git_sha": git_sha(),
        "variant": cfg.model.variant, "n": str(cfg.model.n_streams), "seed": str(cfg.train.seed),
        "d_model": str(cfg.model.d_model), "n_layer": str(cfg.model.n_layer),
        "profile": cfg.profile or "", "name": cfg.name or "", "torch_threads": str(torch.get_num_threads()),
        "hardware": hardware(), **versions(),
    }


def ensure_run(cfg: CellConfig, cell_dir: Path, cid: str, chash: str) -> tracking.RunRef:
    """The cell's run: the one in ``run.json`` if this store holds it (marked ``RUNNING`` again),
    else a new one (params logged) that replaces any other run of this cell's name."""
    uri = cfg.tracking.tracking_uri or store_uri(cfg, cell_dir)
    existing = tracking.RunRef.load(cell_dir / cf.RUN)
    if existing is not None and existing.tracking_uri == uri and tracking.run_status(existing) is not None:
        tracking.reopen_run(existing)
        return existing
    from mhc_bench.cellconfig import flatten

    replaced = tracking.replace_runs_named(uri, cfg.tracking.experiment, cid, cell_dir)
    if replaced:
        print(f"{cid}: replacing its earlier MLflow run(s) {', '.join(replaced)} (trained afresh)")
    params = flatten(cfg.model_dump(mode="json", exclude={"tracking"}))
    ref = tracking.start_run(uri, cfg.tracking.experiment, cid, run_tags(cfg, cid, chash), params,
                             artifact_dir=cell_dir)
    ref.save(cell_dir / cf.RUN)
    return ref


TRAIN_LOCK = cf.CHECKPOINT.parent / "train.lock"


@contextlib.contextmanager
def training_lock(cell_dir: Path, cid: str) -> Iterator[None]:
    """Hold the cell folder's training lock, or refuse in one line (another process trains it)."""
    path = cell_dir / TRAIN_LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            raise UserError(f"{cid} is being trained into {cell_dir} by another process (pid {holder}); "
                            "wait for it to finish or stop it") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_store(uri: str, profile: str | None) -> None:
    """A damaged SQLite store is one line before any compute (an absent one is created later)."""
    from mhc_bench import mlstore

    db = tracking.sqlite_path(uri)
    if db is not None:
        with tracking.store_lock(uri):
            mlstore.check_store(db, f"mhc-bench store rebuild --profile {profile or '<profile>'}")


def _finish_if_running(cell_dir: Path, metrics: cf.Metrics) -> None:
    """A cell killed between writing metrics.json and ending its run: end it now."""
    ref = tracking.RunRef.load(cell_dir / cf.RUN)
    if ref is not None and ref.run_id == metrics.mlflow_run_id and tracking.run_status(ref) == "RUNNING":
        tracking.end_run(ref, "FINISHED")


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
    """The Lightning Trainer of a cell: step-based (endless stream), ``last.ckpt`` every ``ckpt_every``
    (after that step's validation, :mod:`mhc_bench.train.checkpoint`)."""
    import lightning as L

    from mhc_bench.train.checkpoint import LastCheckpoint

    checkpoint = LastCheckpoint(cell_dir / cf.CHECKPOINT, train.ckpt_every, train.val_every)
    return L.Trainer(
        accelerator="gpu" if use_gpu else "cpu", devices=train.devices, strategy=train.strategy,
        precision=train.precision, max_steps=train.steps, max_epochs=-1,
        val_check_interval=train.val_every, check_val_every_n_epoch=None, num_sanity_val_steps=0,
        gradient_clip_val=train.grad_clip or None, gradient_clip_algorithm="norm",
        logger=logger, callbacks=[monitor, checkpoint], enable_checkpointing=False,
        log_every_n_steps=min(50, train.probe_every),
        enable_progress_bar=_progress_bar(), enable_model_summary=False, use_distributed_sampler=False,
        # Bit-exact reruns and resumes on CPU; on GPU the deterministic kernels cost too much speed.
        deterministic=not use_gpu, default_root_dir=cell_dir,
    )


def train_cell(cfg: CellConfig, out_dir: str | Path | None = None, data_root: Path | None = None) -> dict:
    """Train (or resume, or skip) one cell; returns its metrics (``{}`` on ranks other than 0)."""
    configure_environment()
    keep_freed_memory()  # a step reuses the last step's pages (mhc_bench.heap)
    cid, chash = cell_id(cfg), config_hash(cfg)
    cell_dir = Path(out_dir) if out_dir is not None else default_cell_dir(cfg)
    done = cf.finished(cell_dir)
    if done is not None:
        print(f"{cid}: already finished ({done.status}) in {cell_dir}; not retraining")
        _finish_if_running(cell_dir, done)
        return done.model_dump()
    check_writable(cell_dir)
    check_store(cfg.tracking.tracking_uri or store_uri(cfg, cell_dir), cfg.profile)

    import lightning as L
    import torch

    from mhc_bench.data import prepare_data
    from mhc_bench.data.epochs import warn_if_repeating
    from mhc_bench.train.data import TokenDataModule
    from mhc_bench.train.module import GPTModule
    from mhc_bench.train.monitor import TrainingMonitor

    _quiet_lightning()
    train = cfg.train
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    threads_before = torch.get_num_threads()
    # Lightning's MLFlowLogger calls mlflow.set_tracking_uri, which exports MLFLOW_TRACKING_URI:
    # the next cell trained in this process must not inherit this cell's store.
    env_uri_before = os.environ.get(tracking.ENV_URI)
    stack = contextlib.ExitStack()
    try:
        if train.num_threads:
            torch.set_num_threads(train.num_threads)
        prepared = prepare_data(cfg.data, root=data_root)
        check_data_fits(cfg, prepared)
        tokens_per_step = train.batch_size * cfg.model.seq_len * train.devices
        warn_if_repeating(cid, train.steps * tokens_per_step, prepared.train_tokens(), cfg.data.max_epochs)
        resolved = resolve_config(cfg, prepared, cid, chash, store_uri(cfg, cell_dir))
        if _is_rank_zero():
            cell_dir.mkdir(parents=True, exist_ok=True)
            stack.enter_context(training_lock(cell_dir, cid))
            if (done := cf.finished(cell_dir)) is not None:  # finished by whoever held the lock before
                print(f"{cid}: finished meanwhile ({done.status}) in {cell_dir}; not retraining")
                return done.model_dump()
            write_config(cell_dir / cf.CONFIG, resolved)
            shutil.copyfile(prepared.tokenizer_path, cell_dir / cf.TOKENIZER)
            ref = ensure_run(resolved, cell_dir, cid, chash)
        else:
            ref = tracking.RunRef.load(cell_dir / cf.RUN)
            if ref is None:
                raise RuntimeError(f"no {cell_dir / cf.RUN}: rank 0 writes it before starting the others")

        last = cell_dir / cf.CHECKPOINT
        resuming = last.exists()
        L.seed_everything(train.seed, workers=True, verbose=False)
        module = GPTModule(model_config(resolved), train)
        datamodule = TokenDataModule(prepared.train_bin, prepared.val_bin, resolved.model.seq_len,
                                     train.batch_size, train.val_batches, train.seed)
        use_gpu = train.accelerator == "gpu" or (train.accelerator == "auto" and torch.cuda.is_available())
        monitor = TrainingMonitor(train, datamodule.probe_batch(), tokens_per_step)
        trainer = _make_trainer(train, cell_dir, tracking.make_logger(ref), monitor, use_gpu)
        if resuming and _is_rank_zero():
            print(f"{cid}: resuming from {last}")
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=last if resuming else None,
                        weights_only=True)
            if not trainer.is_global_zero:
                return {}
            from mhc_bench.train.finalize import finalize_cell

            return finalize_cell(resolved, cell_dir, ref, trainer, module, datamodule, monitor)
        except BaseException as err:
            if _is_rank_zero():
                with contextlib.suppress(Exception):  # a full disk may refuse this write too
                    tracking.end_run(ref, "FAILED")
            if resuming and _is_checkpoint_error(err):
                raise UserError(f"{last} cannot be loaded ({type(err).__name__}); it is probably "
                                "truncated by an interrupted write: delete it to restart the cell from "
                                "scratch") from None
            if _is_disk_full(err):
                raise UserError(f"no space left on the device holding {cell_dir} (or the MLflow store); "
                                "free some space and run again: the cell resumes from its last "
                                "checkpoint") from None
            raise
    finally:  # leave the process as we found it (tests and notebooks train several cells)
        stack.close()
        torch.use_deterministic_algorithms(deterministic_before)
        torch.set_num_threads(threads_before)
        if env_uri_before is None:
            os.environ.pop(tracking.ENV_URI, None)
        else:
            os.environ[tracking.ENV_URI] = env_uri_before


def model_config(cfg: CellConfig) -> Any:
    """The cell's ``ModelConfig``; a numerical replicate (``train.rerun``) runs on the reference kernels."""
    model_cfg = cfg.model.to_model_config()
    if cfg.train.rerun:
        model_cfg.kernels = "torch"
    return model_cfg


def _is_disk_full(err: BaseException) -> bool:
    """ENOSPC from a write, or SQLite's "database or disk is full" (wrapped by MLflow)."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return True
        if "disk is full" in str(seen) or "No space left on device" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _is_checkpoint_error(err: BaseException) -> bool:
    """Errors torch.load raises on a damaged file (zip reader, unpickler, truncated stream)."""
    import pickle
    import zipfile

    text = str(err)
    return isinstance(err, (EOFError, pickle.UnpicklingError, zipfile.BadZipFile)) or any(
        marker in text for marker in ("PytorchStreamReader", "failed finding central directory",
                                      "unexpected EOF", "Weights only load failed"))


def write_config(path: Path, cfg: CellConfig) -> Path:
    import yaml

    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    tmp.replace(path)
    return path
