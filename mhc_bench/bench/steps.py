"""Whole-model training-step benchmarks: baseline / HC / mHC per path, and selective recompute.

Like with like: every path has its own baseline. The eager paths (``torch``,
``fast``, ``triton``) are divided by the eager baseline (labelled ``torch``:
the baseline has no stream ops), the whole-model compiled path (``compile``)
by the compiled baseline. Compilation happens in each model's first step,
which is timed on its own (``compile_s``) and never mixed into step times.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from mhc_bench import variants
from mhc_bench.bench.measure import SavedBytes, interleaved_medians, median, state_bytes, sync
from mhc_bench.model import GPT, ModelConfig

COMPILED_PATHS = ("compile",)


def mode_of(path: str) -> str:
    """``compiled`` for the whole-model compiled path, ``eager`` for the others."""
    return "compiled" if path in COMPILED_PATHS else "eager"


def baseline_path(path: str) -> str:
    """The path of the baseline row a path is compared with."""
    return "compile" if mode_of(path) == "compiled" else "torch"


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
            seq_len=shape.seq_len, mixing=variant.residual, n_streams=variant.n,
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


def _first_step_s(runner: StepRunner, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    runner.step()
    sync(device)
    return time.perf_counter() - start


def measure_group(
    variants: list[Variant], d_model: int, shape: Shape, device: torch.device, repeats: int, warmup: int,
    log: Callable[[str], None],
) -> list[dict]:
    """Benchmark variants side by side (interleaved) and return one row each.

    Each model's first step (where ``torch.compile`` compiles) is timed alone;
    ``compile_s`` is that step minus the median step. ``warmup`` counts it.
    """
    runners, first = {}, {}
    for v in variants:
        runners[v.key] = StepRunner(v, d_model, shape, device)
        first[v.key] = _first_step_s(runners[v.key], device)
        if mode_of(v.path) == "compiled":
            log(f"d_model={d_model}: compiled {v.key} in its first step, {first[v.key]:.1f} s")
    log(f"d_model={d_model}: {len(runners)} variants, warm-up {warmup}, repeats {repeats}")
    times = interleaved_medians({k: r.step for k, r in runners.items()}, repeats, max(warmup - 1, 0), device)
    tokens = shape.batch * shape.seq_len
    rows = []
    for v in variants:
        runner = runners[v.key]
        ms = median(times[v.key])
        peak, act = runner.peak_mem_mb()
        rows.append({
            "variant": v.residual, "n": v.n, "d_model": d_model, "path": v.path, "mode": mode_of(v.path),
            "recompute": v.recompute, "recompute_block": runner.cfg.recompute_block(),
            "step_time_ms": ms, "step_times_ms": times[v.key], "tokens_per_s": tokens / (ms / 1e3),
            "first_step_s": first[v.key],
            "compile_s": first[v.key] - ms / 1e3 if mode_of(v.path) == "compiled" else None,
            "peak_mem_mb": peak, "activation_mb": act,
            "params": runner.model.num_params(),
        })
    return rows


def add_ratios(rows: list[dict]) -> None:
    """Ratios to the baseline of the same width and mode (see the module docstring).

    ``ratio_to_baseline`` is median over median; ``ratio_range`` the smallest and
    largest ratio of one repeat's times (variants interleaved, so repeat i of
    both ran in the same stretch of time); ``ratio_of_best`` the fastest repeat
    over the fastest repeat, the least disturbed number on a shared machine.
    """
    reference = variants.reference().name
    base = {(r["d_model"], r["path"]): r for r in rows if r["variant"] == reference}
    for r in rows:
        b = base.get((r["d_model"], baseline_path(r["path"])))
        r["baseline_path"] = b["path"] if b else None
        r["baseline_step_time_ms"] = b["step_time_ms"] if b else None
        if b is None:
            r["ratio_to_baseline"] = r["ratio_range"] = r["ratio_of_best"] = r["mem_ratio_to_baseline"] = None
            continue
        per_repeat = [t / tb for t, tb in zip(r["step_times_ms"], b["step_times_ms"], strict=False)]
        r["ratio_to_baseline"] = r["step_time_ms"] / b["step_time_ms"]
        r["ratio_range"] = [min(per_repeat), max(per_repeat)]
        r["ratio_of_best"] = min(r["step_times_ms"]) / min(b["step_times_ms"])
        r["mem_ratio_to_baseline"] = r["peak_mem_mb"] / b["peak_mem_mb"]


def headline(rows: list[dict], n: int = 4) -> list[dict]:
    """Per width: every variant at ``n`` on its best path over the baseline on its best path.

    "Best" is the lowest median step time among the measured paths (eager or
    compiled); also the default eager path (``fast``, what ``kernels: auto``
    runs on CPU) over the eager baseline.
    """
    out = []
    for d in sorted({r["d_model"] for r in rows}):
        at = [r for r in rows if r["d_model"] == d and not r["recompute"]]
        reference = variants.reference().name
        base = [r for r in at if r["variant"] == reference]
        if not base:
            continue
        best_base = min(base, key=lambda r: r["step_time_ms"])
        entry: dict = {"d_model": d, "n": n, "baseline_path": best_base["path"],
                       "baseline_ms": best_base["step_time_ms"]}
        for variant in sorted({r["variant"] for r in at} - {reference}):
            mine = [r for r in at if r["variant"] == variant and r["n"] == n]
            if not mine:
                continue
            best = min(mine, key=lambda r: r["step_time_ms"])
            entry[f"{variant}_path"] = best["path"]
            entry[f"{variant}_ms"] = best["step_time_ms"]
            entry[f"{variant}_ratio"] = best["step_time_ms"] / best_base["step_time_ms"]
            eager = next((r for r in mine if r["path"] == "fast"), None)
            entry[f"{variant}_fast_eager_ratio"] = eager["ratio_to_baseline"] if eager else None
        out.append(entry)
    return out


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
