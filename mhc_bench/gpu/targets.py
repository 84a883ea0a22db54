"""The CUDA targets the kernels are compiled for, and what each allows (pure Python)."""

from __future__ import annotations

from dataclasses import dataclass

from mhc_kernels.configs import MAX_WARPS_PER_SM, REGS_PER_SM, SMEM_PER_BLOCK, SMEM_PER_SM


@dataclass(frozen=True)
class Arch:
    """One compute capability and a typical part (its SM count sizes the split-K grids)."""

    cc: int
    part: str
    sm_count: int

    @property
    def name(self) -> str:
        return f"sm_{self.cc}"

    @property
    def smem_limit(self) -> int:
        return SMEM_PER_BLOCK[self.cc]


ARCHS = {
    80: Arch(80, "A100 SXM", 108),
    86: Arch(86, "RTX 3090 / A40 (99 KB shared memory per block)", 84),
    89: Arch(89, "L40S / RTX 4090 (99 KB shared memory per block)", 142),
    90: Arch(90, "H100 SXM", 132),
    100: Arch(100, "B200", 148),
}
DEFAULT_ARCHS = (80, 86, 90, 100)


def occupancy_warps(cc: int, regs: int, smem: int, num_warps: int) -> int:
    """Resident warps per SM allowed by registers, shared memory and the warp limit.

    Registers are allocated per warp in units of 256 (8 per thread); shared
    memory adds the 1 KB the driver reserves per block.
    """
    if regs <= 0:
        return 0
    regs_per_warp = -(-regs // 8) * 8 * 32
    by_regs = REGS_PER_SM // (regs_per_warp * num_warps)
    by_smem = SMEM_PER_SM[cc] // (smem + 1024) if smem else 32
    by_warps = MAX_WARPS_PER_SM[cc] // num_warps
    return min(by_regs, by_smem, by_warps, 32) * num_warps
