"""Whole-model training-step benchmarks: baseline / HC / mHC per path, and selective recompute."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from mhc_bench.bench.measure import SavedBytes, interleaved_medians, median, state_bytes
from mhc_bench.model import GPT, ModelConfig


@dataclass(frozen=True)
class Shape:
    layers: int
    seq_len: int
    batch: int
    vocab: int
    n_head: int


@dataclass(frozen=True)
class Variant:
    residual: str
    n: int
    path: str
    recompute: int = 0

    @property
    def key(self) -> str:
        return f"{self.residual}/n{self.n}/{self.path}/rc{self.recompute}"


class StepRunner:
    """One model + AdamW + fixed batch; ``step()`` is forward, backward and optimizer step."""

    def __init__(self, variant: Variant, d_model: int, shape: Shape, device: torch.device) -> None:
        torch.manual_seed(0)
        cfg = ModelConfig(
            vocab_size=shape.vocab, n_layer=shape.layers, d_model=d_model, n_head=shape.n_head,
            seq_len=shape.seq_len, variant=variant.residual, n_streams=variant.n,
            kernels=variant.path, recompute=variant.recompute,
        )
        self.cfg = cfg
        self.model = GPT(cfg).to(device).train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        gen = torch.Generator().manual_seed(1)
        idx = torch.randint(0, shape.vocab, (shape.batch, shape.seq_len + 1), generator=gen).to(device)
        self.inputs, self.targets = idx[:, :-1], idx[:, 1:]
        self.device = device

    def step(self) -> None:
        _, loss = self.model(self.inputs, self.targets)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def activation_bytes(self) -> int:
        """Bytes held from forward to backward (saved tensors + checkpointed block inputs)."""
        params = list(self.model.parameters())
        counter = SavedBytes(exclude=params)
        handles = []
        block = self.cfg.recompute_block()
        if block > 0:
            layers = self.model.layers
            for start in range(0, len(layers), block):
                handles.append(layers[start].register_forward_pre_hook(
                    lambda _m, args: (counter.add(args[0]), None)[1]))
        try:
            with counter:
                _, loss = self.model(self.inputs, self.targets)
        finally:
            for h in handles:
                h.remove()
        del loss
        return counter.total

    def peak_mem_mb(self) -> tuple[float, float]:
        """(peak step memory, activation memory) in MiB; measured on CUDA, accounted on CPU."""
        act = self.activation_bytes()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.step()
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            peak = act + state_bytes(self.model, self.opt)
        return peak / 2**20, act / 2**20


def measure_group(
    variants: list[Variant], d_model: int, shape: Shape, device: torch.device, repeats: int, warmup: int,
    log: Callable[[str], None],
) -> list[dict]:
    """Benchmark variants side by side (interleaved) and return one row each."""
    runners = {v.key: StepRunner(v, d_model, shape, device) for v in variants}
    log(f"d_model={d_model}: {len(runners)} variants, warm-up {warmup}, repeats {repeats}")
    times = interleaved_medians({k: r.step for k, r in runners.items()}, repeats, warmup, device)
    tokens = shape.batch * shape.seq_len
    rows = []
    for v in variants:
        runner = runners[v.key]
        ms = median(times[v.key])
        peak, act = runner.peak_mem_mb()
        rows.append({
            "variant": v.residual, "n": v.n, "d_model": d_model, "path": v.path,
            "recompute": v.recompute, "recompute_block": runner.cfg.recompute_block(),
            "step_time_ms": ms, "step_times_ms": times[v.key], "tokens_per_s": tokens / (ms / 1e3),
            "peak_mem_mb": peak, "activation_mb": act,
            "params": runner.model.num_params(),
        })
    return rows


def add_ratios(rows: list[dict]) -> None:
    """``ratio_to_baseline``: step time over the baseline's at the same width (baseline path: torch)."""
    base = {r["d_model"]: r for r in rows if r["variant"] == "baseline"}
    for r in rows:
        b = base.get(r["d_model"])
        r["ratio_to_baseline"] = r["step_time_ms"] / b["step_time_ms"] if b else None
        r["mem_ratio_to_baseline"] = r["peak_mem_mb"] / b["peak_mem_mb"] if b else None


def recompute_rows(
    d_model: int, n: int, path: str, shape: Shape, device: torch.device, repeats: int, warmup: int,
    log: Callable[[str], None],
) -> dict:
    """mHC with recompute off vs the paper's L_r*: step time, activation memory and the saving."""
    variants = [Variant("mhc", n, path, 0), Variant("mhc", n, path, -1)]
    off, on = measure_group(variants, d_model, shape, device, repeats, warmup, log)
    return {
        "d_model": d_model, "n": n, "path": path, "block": on["recompute_block"],
        "off": off, "on": on,
        "time_ratio": on["step_time_ms"] / off["step_time_ms"],
        "activation_saving": 1.0 - on["activation_mb"] / off["activation_mb"],
        "peak_saving": 1.0 - on["peak_mem_mb"] / off["peak_mem_mb"],
    }
