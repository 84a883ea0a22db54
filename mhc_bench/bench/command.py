"""``mhc-bench bench``: overhead of HC/mHC over the baseline, like with like, against the memory floor.

Everything runs side by side in one process, variants interleaved across
repeats, medians after warm-up. Each path is compared with the baseline on
the same footing: eager paths (``torch`` = the reference, ``fast`` = the CPU
fast path, ``triton``) with the eager baseline, the whole-model compiled path
(``compile``) with the compiled baseline; compile time is reported on its own.
Outputs in ``--out``:

``bench.json`` (schema_version 2)::

    meta:      {command, args, environment: {device, torch_threads, cpu_count, load_avg,
                versions, ...}, shape: {layers, seq_len, batch, vocab, n_head}, paths, notes: [str]}
    rows:      one per (variant, n, d_model, path), the training-step table:
               {variant: "baseline"|"hc"|"mhc", n, d_model, path: "torch"|"fast"|"compile"|"triton",
                mode: "eager"|"compiled", recompute, recompute_block,
                step_time_ms (median), step_times_ms (all repeats), tokens_per_s, first_step_s,
                compile_s (compiled rows: first step minus the median step), peak_mem_mb, activation_mb,
                params, baseline_path ("torch" for eager rows, "compile" for compiled rows),
                baseline_step_time_ms, ratio_to_baseline (median / median), ratio_range ([min, max] of
                per-repeat ratios), ratio_of_best (fastest repeat / fastest baseline repeat),
                mem_ratio_to_baseline, floor_bytes, floor_ms, floor_ratio (predicted by the memory floor),
                extra_ms (step - baseline), extra_over_floor (extra_ms / floor_ms), compute_floor_flops,
                compute_floor_ms (those FLOPs at gemm_gflops), roofline_ms (max of the two floors),
                roofline_ratio, extra_over_roofline (extra_ms / roofline_ms)}
    headline:  per d_model: HC and mHC at n = 4 on their best path over the baseline on its best path,
               and the default eager path's ratio: {d_model, n, baseline_path, baseline_ms,
               mhc_path, mhc_ms, mhc_ratio, mhc_fast_eager_ratio, hc_...}
    copy_bandwidth_gbps: measured copy bandwidth of this device (the memory floor's denominator)
    gemm_gflops: measured square-matmul throughput of this device (the compute floor's denominator; not
               measured with --skip steps)
    compile_cache: [{variant, n, d_model, cold_compile_s, warm_compile_s, saving, ...}] (CPU, compile path)
    recompute: per (d_model, path) for mHC at --recompute-n: {d_model, n, path, block,
               off: <row>, on: <row>, time_ratio (on/off), activation_saving, peak_saving (fractions)}
    micro:     per (op: "maps"|"pre"|"post_res", n, d_model, path): {tokens, fwd_ms, fwd_bwd_ms,
               fwd_bytes, fwd_gbps, fraction_of_copy_bw}
    peer:      per (impl: "peer"|"ours/<path>", n, d_model): {tokens, fwd_bwd_ms, activation_mb,
               time_ratio_to_peer, mem_ratio_to_peer, branch_ms (the shared branch alone),
               overhead_ms (layer - branch), overhead_ratio_to_peer}

The floors (``mhc_bench.bench.floor``): the bytes the extra n-stream ops must
move per step, from the shapes, over the measured copy bandwidth (memory);
their FLOPs over the measured peak GEMM rate (compute); the roofline is the
larger. The predicted ``floor_ratio`` and ``roofline_ratio`` sit next to each
measured ratio.

Memory: on CUDA ``peak_mem_mb`` is ``torch.cuda.max_memory_allocated`` over one
step; on CPU it is accounted, not sampled: activation memory (distinct storages
saved for backward plus checkpointed block inputs) + parameters, gradients and
AdamW state.

``bench.md`` holds the same numbers as Markdown tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from mhc_bench.errors import UserError

# --quick: tiny sizes, eager paths only (unless --paths is given), so it runs in seconds.
QUICK = {"d_model": [32], "n": [1, 4], "micro_n": [4], "layers": 1, "seq_len": 16, "batch": 2, "repeats": 2,
         "warmup": 1, "vocab": 128, "n_head": 2}
PATHS = ["torch", "fast", "compile", "triton"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("results/bench"), help="output folder")
    parser.add_argument("--d-model", type=int, nargs="+", default=[256, 512], help="widths C")
    parser.add_argument("--n", type=int, nargs="+", default=[1, 2, 4, 8], help="stream counts")
    parser.add_argument("--layers", type=int, default=4, help="transformer blocks (2 residual layers each)")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--n-head", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps, the first (compile) included")
    parser.add_argument("--paths", nargs="+", default=None, choices=PATHS,
                        help="kernel paths (default: torch fast compile, plus triton on CUDA)")
    parser.add_argument("--variants", nargs="+", default=["baseline", "hc", "mhc"],
                        help="registered variants to time (mhc-bench variants lists them); the "
                             "reference (baseline) is what the ratios divide by")
    parser.add_argument("--micro-n", type=int, nargs="+", default=[4],
                        help="stream counts of the kernel microbenchmarks")
    parser.add_argument("--recompute-n", type=int, default=4, help="n of the recompute comparison")
    parser.add_argument("--cache-probe-n", type=int, default=4,
                        help="mHC n of the compile-cache probe (cold vs warm compile, at the first d_model)")
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["steps", "recompute", "micro", "peer", "compile_cache"])
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for tests and smoke runs")


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _default_paths(device_type: str, quick: bool) -> list[str]:
    if quick:
        return ["torch", "fast"]
    return ["torch", "fast", "compile", "triton"] if device_type == "cuda" else ["torch", "fast", "compile"]


def run(args: argparse.Namespace) -> int:
    import torch

    from mhc_bench import variants as registry
    from mhc_bench.bench import compile_cache, floor, measure, micro, output, peer, steps

    for name in args.variants:
        try:
            registry.get(name)  # an unknown name fails here, before any timing
        except ValueError as err:
            raise UserError(f"--variants: {err}") from None
    reference = registry.reference().name

    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    paths = args.paths or _default_paths(device.type, args.quick)
    eager_paths = [p for p in paths if steps.mode_of(p) == "eager"]
    if "triton" in paths and device.type != "cuda":
        _log("note: triton on CPU runs in the interpreter; its timings are not meaningful")
    allocator_pinned = device.type == "cpu" and measure.keep_freed_memory()
    shape = steps.Shape(args.layers, args.seq_len, args.batch, args.vocab, args.n_head)
    tokens = args.batch * args.seq_len
    notes = [
        "CPU memory is accounted (saved tensors + state), not sampled; CUDA memory is max_memory_allocated.",
        "Eager paths are compared with the eager baseline (path 'torch': it has no stream ops), the "
        "compiled path with the compiled baseline; compile time (compile_s) is not in any step time.",
        "floor_ratio: (baseline step + bytes the extra n-stream ops must move / copy bandwidth) / baseline "
        "step; extra_over_floor: measured extra time over that floor; roofline_ratio and "
        "extra_over_roofline: the same with the larger of that floor and the extra FLOPs at the peak "
        "GEMM rate (see mhc_bench/bench/floor.py).",
    ]
    if allocator_pinned:
        notes.append("glibc mallopt: freed memory kept in the process (no per-step page faults).")
    result: dict = {"schema_version": 2, "rows": [], "headline": [], "recompute": [], "micro": [],
                    "peer": [], "compile_cache": []}
    started = time.time()
    result["copy_bandwidth_gbps"] = bw = floor.copy_bandwidth_gbps(device)
    _log(f"copy bandwidth {bw:.1f} GB/s")
    if "steps" not in args.skip:
        result["gemm_gflops"] = gemm = floor.matmul_gflops(device)  # only the step table's roofline uses it
        _log(f"square matmul {gemm:.1f} GFLOP/s")
        for C in args.d_model:
            variants = []
            if reference in args.variants:
                base_paths = dict.fromkeys(map(steps.baseline_path, paths))  # one per mode, in order
                variants += [steps.Variant(reference, 1, p) for p in base_paths]
            variants += [steps.Variant(kind, n, path) for path in paths for kind in args.variants
                         if kind != reference for n in args.n]
            result["rows"] += steps.measure_group(variants, C, shape, device, args.repeats, args.warmup, _log)
        steps.add_ratios(result["rows"])
        floor.add_floor(result["rows"], bw, tokens, 2 * args.layers, gemm)
        result["headline"] = steps.headline(result["rows"])
    if "compile_cache" not in args.skip and "compile" in paths and device.type == "cpu":
        result["compile_cache"].append(
            compile_cache.probe("mhc", args.cache_probe_n, args.d_model[0], shape, _log))
    if "recompute" not in args.skip:
        for C in args.d_model:
            for path in eager_paths:
                result["recompute"].append(steps.recompute_rows(
                    C, args.recompute_n, path, shape, device, args.repeats, args.warmup, _log))
    if "micro" not in args.skip and eager_paths:
        _log("kernel microbenchmarks")
        result["micro"] = micro.micro_rows(eager_paths, tokens, args.micro_n, args.d_model, device,
                                           args.repeats, args.warmup, bw)
    if "peer" not in args.skip:
        if peer.peer_available():
            _log("peer comparison")
            result["peer"] = peer.peer_rows(eager_paths, args.n, args.d_model, args.batch, args.seq_len,
                                            device, args.repeats, args.warmup)
        else:
            notes.append("hyper-connections is not installed (pip install '.[peer]'): peer table skipped.")
    if "compile" in paths:
        notes.append("Recompute, micro and peer tables time the eager paths; the peer package runs eagerly.")
    result["meta"] = {
        "command": "mhc-bench bench " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else None,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "environment": output.environment(device), "shape": dataclasses.asdict(shape), "paths": paths,
        "wall_s": time.time() - started, "notes": notes,
    }
    json_path, md_path = output.write_outputs(args.out, result)
    _log(f"wrote {json_path} and {md_path} in {time.time() - started:.0f} s")
    return 0
