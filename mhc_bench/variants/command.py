"""``mhc-bench variants``: what is registered, with each variant's knobs; ``--explain``: what runs where."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", help="variants to show (default: all registered)")
    parser.add_argument("--explain", action="store_true",
                        help="for every kernels choice, which implementation runs the maps and the stream "
                             "ops on CPU and on CUDA (the one decision of mhc_bench.dispatch.pick)")


def run(args: argparse.Namespace) -> int:
    from mhc_bench import dispatch, variants
    from mhc_bench.errors import UserError

    try:
        chosen = [variants.get(name) for name in (args.names or variants.names())]
    except ValueError as err:
        raise UserError(str(err)) from None
    for spec in chosen:
        origin = type(spec).__module__
        role = " (reference)" if spec.is_reference else ""
        print(f"{spec.name}{role}: {spec.summary}")
        print(f"  label {spec.label!r}, marker {spec.marker!r}, defined in {origin}")
        knobs = spec.describe_knobs()
        if knobs:
            print("  knobs (model.mixing):")
            width = max(len(k) for k, _, _ in knobs)
            for name, kind, default in knobs:
                print(f"    {name:<{width}}  {kind}, default {default}")
        else:
            print("  knobs: none")
        print("  implementations: " + "; ".join(f"{p}: {what}" for p, what in spec.implementations.items()))
        if args.explain:
            has_maps = not spec.single_stream
            for device in ("cpu", "cuda"):
                rows = [f"{k} -> {dispatch.describe(k, device, spec.implementations, has_maps)}"
                        for k in dispatch.KERNEL_CHOICES]
                print(f"  on {device}: " + "; ".join(rows))
        print()
    if args.explain:
        print("triton runs only where it can (a CUDA device, or TRITON_INTERPRET=1 on CPU); a path an op "
              "lacks falls back along triton -> fast -> torch. Each cell records what ran "
              "(metrics.json: kernel_paths).")
    return 0
