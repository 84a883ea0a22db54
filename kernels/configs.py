"""Block sizes and launch options of every kernel, per target (pure Python, no torch or triton).

One place decides the tiling, so the runtime launchers and the ahead-of-time
compile table (``mhc-bench kernels aot``) always compile the same thing.

Targets are ``0`` (the Triton interpreter on CPU) or a CUDA compute
capability as an int (80, 86, 89, 90, 100). The interpreter pays per program
and per op, so it gets few, large programs; a GPU gets register-sized tiles:

- stream kernels (pre, post+res, both directions): a 2D grid of
  ``[BT tokens, NP streams, BC channels]`` tiles of about 2048 elements
  (16 values per thread at 4 warps), no loop; the backward kernels write
  one partial map gradient per channel block, summed afterwards (a few hundred
  bytes per token against tens of kB of stream traffic);
- maps projection: ``BT`` tokens x ``BK`` columns of ``x`` per pipeline
  stage, split-K over a second grid axis so that short token counts still
  fill the GPU;
- Sinkhorn epilogues: ``BE`` tokens of ``NP x NP`` maps, about 4 map entries
  per thread;
- maps backward: one program per ``BK`` columns of ``x`` loops over a token
  range, producing ``dx`` and a partial ``dphi`` in one pass over ``x``.

Every choice below was checked with ``mhc-bench kernels aot`` (registers,
spills, shared memory on sm_80, sm_86, sm_90 and sm_100); the committed table
is ``results/kernels/aot.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

INTERPRETER = 0

# Largest dynamic shared memory one block may opt into (bytes), per compute capability
# (CUDA programming guide, "Compute capabilities" table): 163 KB on A100 (sm_80), 99 KB on
# sm_86/sm_89 consumer and workstation cards, 227 KB on H100 (sm_90) and B200 (sm_100).
SMEM_PER_BLOCK = {80: 166_912, 86: 101_376, 87: 166_912, 89: 101_376, 90: 232_448, 100: 232_448}
# Shared memory per SM and resident warps per SM, for the occupancy column of the AOT table.
SMEM_PER_SM = {80: 167_936, 86: 102_400, 87: 167_936, 89: 102_400, 90: 233_472, 100: 233_472}
MAX_WARPS_PER_SM = {80: 64, 86: 48, 87: 48, 89: 48, 90: 64, 100: 64}
REGS_PER_SM = 65_536
STREAM_TILE = 2048  # elements of one stream-kernel tile on GPU


def next_pow2(x: int) -> int:
    """Smallest power of two >= x (1 for x <= 1)."""
    return 1 if x <= 1 else 1 << (int(x) - 1).bit_length()


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class Tiles:
    """Constexpr block sizes of one kernel plus its launch options."""

    blocks: dict[str, int | str] = field(default_factory=dict)
    num_warps: int = 4
    num_stages: int = 1


def maps_width(n: int) -> int:
    """Columns of ``[phi_pre | phi_post | phi_res]``: ``2n + n^2``."""
    return 2 * n + n * n


def stream_tiles(n: int, C: int, target: int) -> Tiles:
    """pre / post+res, forward and backward: ``NP`` (n padded to a power of two), ``BT``, ``BC``."""
    NP = next_pow2(n)
    if target == INTERPRETER:
        BC = min(next_pow2(C), 512)
        return Tiles({"NP": NP, "BT": 64, "BC": BC})
    BC = max(32, min(next_pow2(C), 512, STREAM_TILE // NP))
    BT = max(1, STREAM_TILE // (NP * BC))
    return Tiles({"NP": NP, "BT": BT, "BC": BC}, num_warps=4, num_stages=1)


def maps_proj_tiles(n: int, target: int) -> Tiles:
    """``x @ phi`` and the sum of squares: ``WP`` (padded width), ``BT`` tokens, ``BK`` columns per stage."""
    WP = max(16, next_pow2(maps_width(n)))
    if target == INTERPRETER:
        return Tiles({"WP": WP, "BT": 64, "BK": 256})
    if WP <= 32:  # n <= 4
        stages = 4 if target in (80, 87, 90, 100) else 3  # 61-70 KB of pipeline buffers; 3 on 99 KB parts
        # n <= 2 (WP = 16) at 128 tokens spills 8-12 B on sm_100 (ptxas-blackwell 13.4 stops at 80 regs).
        BT = 64 if WP == 16 and target >= 100 else 128
        return Tiles({"WP": WP, "BT": BT, "BK": 32}, num_warps=8, num_stages=stages)
    return Tiles({"WP": WP, "BT": 64, "BK": 32}, num_warps=8, num_stages=3)


def maps_sinkhorn_tiles(n: int, target: int) -> Tiles:
    """Gates, sigmoids and Sinkhorn (forward or exact backward) on ``BE`` tokens of ``NP x NP`` maps."""
    NP = next_pow2(n)
    if target == INTERPRETER:
        return Tiles({"NP": NP, "BE": 64})
    return Tiles({"NP": NP, "BE": min(128, max(16, 512 // (NP * NP)))}, num_warps=4, num_stages=1)


def maps_bwd_x_tiles(n: int, target: int) -> Tiles:
    """``dx`` and the partial ``dphi`` of one ``BK``-column block, looping over ``BT``-token chunks."""
    WP = max(16, next_pow2(maps_width(n)))
    if target == INTERPRETER:
        return Tiles({"WP": WP, "BT": 64, "BK": 128})
    return Tiles({"WP": WP, "BT": 16, "BK": 32}, num_warps=4, num_stages=2)


def splits(blocks: int, length: int, chunk: int, target: int, sm_count: int, min_chunks: int = 4) -> int:
    """How many ways to split a reduction of ``length`` (in ``chunk`` steps) so that about
    ``2 * sm_count`` programs run when the other grid axis has only ``blocks`` programs.
    Each split keeps at least ``min_chunks`` steps. The interpreter never splits (tests
    reach the split path by forcing a GPU target)."""
    if target == INTERPRETER:
        return 1
    want = cdiv(2 * sm_count, max(1, blocks))
    most = max(1, length // (min_chunks * chunk))
    return max(1, min(want, most))


def split_length(length: int, n_splits: int, chunk: int) -> tuple[int, int]:
    """``(per_split, n_splits)``: a multiple of ``chunk`` per split, and the splits actually used."""
    per = max(chunk, cdiv(cdiv(length, n_splits), chunk) * chunk)
    return per, max(1, cdiv(length, per))
