"""``mhc-bench bench``: overhead of HC/mHC over the baseline, recompute, kernels, peer package.

Everything runs side by side in one process, variants interleaved across
repeats, medians after warm-up. Outputs in ``--out``:

``bench.json`` (schema_version 1)::

    meta:      {command, args, environment: {device, torch_threads, cpu_count, load_avg,
                versions, ...}, shape: {layers, seq_len, batch, vocab, n_head}, notes: [str]}
    rows:      one per (variant, n, d_model, path), the training-step table:
               {variant: "baseline"|"hc"|"mhc", n, d_model, path: "torch"|"compile"|"triton",
                recompute, recompute_block, step_time_ms (median), step_times_ms (all repeats),
                tokens_per_s, peak_mem_mb, activation_mb, params,
                ratio_to_baseline (step time / baseline's at the same d_model),
                mem_ratio_to_baseline}
    recompute: per (d_model, path) for mHC at --recompute-n: {d_model, n, path, block,
               off: <row>, on: <row>, time_ratio (on/off), activation_saving, peak_saving (fractions)}
    micro:     per (op: "maps"|"pre"|"post_res", n, d_model, path): {tokens, fwd_ms, fwd_bwd_ms,
               fwd_bytes, fwd_gbps, fraction_of_copy_bw (CUDA only, else null)}
    copy_bandwidth_gbps: float (CUDA) or null
    peer:      per (impl: "peer"|"ours/<path>", n, d_model): {tokens, fwd_bwd_ms, activation_mb,
               time_ratio_to_peer, mem_ratio_to_peer}

Memory: on CUDA ``peak_mem_mb`` is ``torch.cuda.max_memory_allocated`` over one
step; on CPU it is accounted, not sampled: activation memory (distinct storages
saved for backward plus checkpointed block inputs) + parameters, gradients and
AdamW state. The baseline runs once per width (it has no stream ops, so the
path does not apply) and is labelled path "torch".

``bench.md`` holds the same numbers as Markdown tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

# --quick: tiny sizes and (unless --paths is given) the torch path only, so it runs in seconds.
QUICK = {"d_model": [32], "n": [1, 4], "micro_n": [4], "layers": 1, "seq_len": 16, "batch": 2, "repeats": 2,
         "warmup": 1, "vocab": 128, "n_head": 2}


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
    parser.add_argument("--warmup", type=int, default=2, help="untimed warm-up steps (compile happens here)")
    parser.add_argument("--paths", nargs="+", default=None, choices=["torch", "compile", "triton"],
                        help="kernel paths (default: torch compile, plus triton on CUDA)")
    parser.add_argument("--variants", nargs="+", default=["baseline", "hc", "mhc"],
                        choices=["baseline", "hc", "mhc"])
    parser.add_argument("--micro-n", type=int, nargs="+", default=[4],
                        help="stream counts of the kernel microbenchmarks (each compiles anew)")
    parser.add_argument("--recompute-n", type=int, default=4, help="n of the recompute comparison")
    parser.add_argument("--skip", nargs="*", default=[], choices=["steps", "recompute", "micro", "peer"])
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for tests and smoke runs")


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    import torch

    from mhc_bench.bench import measure, micro, output, peer, steps

    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    paths = args.paths or (["torch", "compile", "triton"] if device.type == "cuda" else ["torch", "compile"])
    if args.quick and not args.paths:
        paths = ["torch"]
    if "triton" in paths and device.type != "cuda":
        _log("note: triton on CPU runs in the interpreter; its timings are not meaningful")
    allocator_pinned = device.type == "cpu" and measure.keep_freed_memory()
    shape = steps.Shape(args.layers, args.seq_len, args.batch, args.vocab, args.n_head)
    notes = [
        "CPU memory is accounted (saved tensors + state), not sampled; CUDA memory is max_memory_allocated.",
        "The baseline has no stream ops: measured once per width, path 'torch'.",
    ]
    if allocator_pinned:
        notes.append("glibc mallopt: freed memory kept in the process (no per-step page faults).")
    result: dict = {"schema_version": 1, "rows": [], "recompute": [], "micro": [], "peer": [],
                    "copy_bandwidth_gbps": None}
    started = time.time()
    if "steps" not in args.skip:
        for C in args.d_model:
            variants = [steps.Variant("baseline", 1, "torch")] if "baseline" in args.variants else []
            variants += [steps.Variant(kind, n, path) for path in paths for kind in ("hc", "mhc")
                         if kind in args.variants for n in args.n]
            result["rows"] += steps.measure_group(variants, C, shape, device, args.repeats, args.warmup, _log)
        steps.add_ratios(result["rows"])
    if "recompute" not in args.skip:
        for C in args.d_model:
            for path in paths:
                result["recompute"].append(steps.recompute_rows(
                    C, args.recompute_n, path, shape, device, args.repeats, args.warmup, _log))
    if "micro" not in args.skip:
        _log("kernel microbenchmarks")
        result["micro"], result["copy_bandwidth_gbps"] = micro.micro_rows(
            paths, args.batch * args.seq_len, args.micro_n, args.d_model, device, args.repeats, args.warmup)
    if "peer" not in args.skip:
        if peer.peer_available():
            _log("peer comparison")
            result["peer"] = peer.peer_rows(paths, args.n, args.d_model, args.batch, args.seq_len, device,
                                            args.repeats, args.warmup)
        else:
            notes.append("hyper-connections is not installed (pip install '.[peer]'): peer table skipped.")
    result["meta"] = {
        "command": "mhc-bench bench " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else None,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "environment": output.environment(device), "shape": dataclasses.asdict(shape), "paths": paths,
        "wall_s": time.time() - started, "notes": notes,
    }
    json_path, md_path = output.write_outputs(args.out, result)
    _log(f"wrote {json_path} and {md_path} in {time.time() - started:.0f} s")
    return 0
