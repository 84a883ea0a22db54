"""Does a second process compile the same model from inductor's cache? Measured, not assumed.

Two fresh Python processes build the same model with ``kernels: compile`` and
time their first training step against one new, empty
``TORCHINDUCTOR_CACHE_DIR``: the first compiles from nothing (cold), the second
finds the first's FX-graph and kernel cache entries (warm), as the second
seed of a training cell does with the project's shared ``.cache/inductor``.
``compile_s`` is the first step minus a later step; inductor's own counters
(FX-graph cache hits and misses, AOTAutograd cache hits) say what was reused.

Run as a module, it is that child process: it prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import torch


def _child(args: argparse.Namespace) -> None:
    from mhc_bench.bench.measure import keep_freed_memory, median
    from mhc_bench.bench.steps import Shape, StepRunner, Variant

    keep_freed_memory()
    torch.set_num_threads(args.threads)
    shape = Shape(args.layers, args.seq_len, args.batch, args.vocab, args.n_head)
    runner = StepRunner(Variant(args.variant, args.n, "compile"), args.d_model, shape, torch.device("cpu"))
    start = time.perf_counter()
    runner.step()
    first = time.perf_counter() - start
    later = []
    for _ in range(3):
        start = time.perf_counter()
        runner.step()
        later.append(time.perf_counter() - start)
    from torch._dynamo.utils import counters

    hits = {"fx_graph_hits": counters["inductor"]["fxgraph_cache_hit"],
            "fx_graph_misses": counters["inductor"]["fxgraph_cache_miss"],
            "aot_autograd_hits": counters["aot_autograd"]["autograd_cache_hit"]}
    print(json.dumps({"first_step_s": first, "step_s": median(later), **hits}))


def _run(cache: str, argv: list[str]) -> dict:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
    proc = subprocess.run([sys.executable, "-m", "mhc_bench.bench.compile_cache", *argv], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"compile-cache probe failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def probe(variant: str, n: int, d_model: int, shape: object, log: Callable[[str], None]) -> dict:
    """Cold and warm compile of one model (CPU) in two child processes sharing a fresh cache."""
    argv = [f"--{k.replace('_', '-')}={v}" for k, v in vars(shape).items()]
    argv += [f"--variant={variant}", f"--n={n}", f"--d-model={d_model}",
             f"--threads={torch.get_num_threads()}"]
    with tempfile.TemporaryDirectory(prefix="mhc-inductor-") as cache:
        log(f"compile cache: {variant} n={n} d_model={d_model}, cold process")
        cold = _run(cache, argv)
        log(f"compile cache: cold first step {cold['first_step_s']:.1f} s; warm process")
        warm = _run(cache, argv)
    cold_s, warm_s = cold["first_step_s"] - cold["step_s"], warm["first_step_s"] - warm["step_s"]
    return {"variant": variant, "n": n, "d_model": d_model, "cold_compile_s": cold_s,
            "warm_compile_s": warm_s, "cold_first_step_s": cold["first_step_s"],
            "warm_first_step_s": warm["first_step_s"], "step_s": warm["step_s"],
            "saving": 1.0 - warm_s / cold_s if cold_s > 0 else None,
            "cold_fx_graph_hits": cold["fx_graph_hits"], "cold_fx_graph_misses": cold["fx_graph_misses"],
            "warm_fx_graph_hits": warm["fx_graph_hits"], "warm_fx_graph_misses": warm["fx_graph_misses"],
            "warm_aot_autograd_hits": warm["aot_autograd_hits"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("layers", "seq-len", "batch", "vocab", "n-head", "n", "d-model", "threads"):
        parser.add_argument(f"--{name}", type=int, required=True)
    parser.add_argument("--variant", required=True)
    _child(parser.parse_args())


if __name__ == "__main__":
    main()
