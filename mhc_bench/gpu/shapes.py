"""The kernel shapes to compile: what every profile can launch, plus the paper's grid.

A shape is ``(n, C, stream dtype, y dtype)`` with a representative token
count (only the grid and the split counts depend on it). With
``kernels: auto`` every profile launches the Triton kernels when it runs on
CUDA, so all profiles count, not only the gpu-* ones; the overhead benchmark
(``bench.args``) adds its widths and stream counts in fp32. Lightning's
precision sets the dtypes (``mhc_bench.ops`` policy): ``bf16-mixed`` keeps
an fp32 stream with a bf16 layer output, ``bf16-true`` makes both bf16.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

PAPER_N = (1, 2, 4, 8)
PAPER_C = (128, 512, 2560, 4096)
PAPER_DTYPES = (("fp32", "fp32"), ("bf16", "bf16"))
PAPER_TOKENS = 8192  # two sequences of 4096 per micro-batch
PRECISION_DTYPES = {
    "32-true": ("fp32", "fp32"), "32": ("fp32", "fp32"), "bf16-mixed": ("fp32", "bf16"),
    "16-mixed": ("fp32", "fp16"), "bf16-true": ("bf16", "bf16"),
}
BENCH_QUICK = {"d_model": [32], "n": [1, 4], "batch": 2, "seq_len": 16}  # mhc_bench.bench.command.QUICK


@dataclass(frozen=True, order=True)
class Shape:
    n: int
    C: int
    stream: str
    y: str
    tokens: int


def paper_shapes() -> list[Shape]:
    """n in {1, 2, 4, 8} x C in {128, 512, 2560, 4096}, fp32 and bf16 streams."""
    return [Shape(n, C, s, y, PAPER_TOKENS) for n in PAPER_N for C in PAPER_C for s, y in PAPER_DTYPES]


def _bench_shapes(args: list[str]) -> list[Shape]:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--d-model", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--n", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--micro-n", type=int, nargs="+", default=[4])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--quick", action="store_true")
    known, _ = parser.parse_known_args([str(a) for a in args])
    if known.quick:
        q = BENCH_QUICK
        widths, ns, tokens = q["d_model"], q["n"], q["batch"] * q["seq_len"]
    else:
        widths, ns = known.d_model, sorted(set(known.n) | set(known.micro_n))
        tokens = known.batch * known.seq_len
    return [Shape(n, C, "fp32", "fp32", tokens) for C in widths for n in ns if n > 1]


def profile_shapes(profile: str | Path) -> list[Shape]:
    """Every (n, C, dtypes) a profile's cells and its benchmark launch (mHC and HC rows, n > 1)."""
    from mhc_bench import variants
    from mhc_bench.workflow.grid import cell_config, expand_grid, load_profile

    config = load_profile(profile)
    shapes = set()
    for row in expand_grid(config).to_dict("records"):
        if variants.get(row["variant"]).single_stream:
            continue
        cell = cell_config(config, row)
        model, train = cell["model"], cell["train"]
        stream, y = PRECISION_DTYPES[str(train.get("precision", "32-true"))]
        tokens = int(train.get("batch_size", 16)) * int(model.get("seq_len", 128))
        shapes.add(Shape(int(model["n_streams"]), int(model["d_model"]), stream, y, tokens))
    shapes.update(_bench_shapes(list(config.get("bench", {}).get("args", []))))
    return sorted(shapes)


# CI compiles a representative few (seconds of CPU): the paper shape under bf16-mixed for H100,
# a padded n = 3 with a bf16 stream for A100; every kernel once per target.
CI_JOBS = ((90, Shape(4, 4096, "fp32", "bf16", PAPER_TOKENS), "paper (bf16-mixed)"),
           (80, Shape(3, 2560, "bf16", "bf16", PAPER_TOKENS), "n not a power of two"))


def all_shapes(profile_dir: Path) -> dict[Shape, list[str]]:
    """Shape -> where it comes from (``paper`` and/or profile names), paper grid first."""
    sources: dict[Shape, list[str]] = {s: ["paper"] for s in paper_shapes()}
    for path in sorted(profile_dir.glob("*.yaml")):
        for shape in profile_shapes(path):
            sources.setdefault(shape, []).append(path.stem)
    return sources
