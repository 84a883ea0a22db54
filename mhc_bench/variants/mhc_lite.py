"""mHC-lite (Yang & Gao, arXiv:2601.05732): H_res as a convex mixture of permutation matrices.

Birkhoff-von Neumann: every doubly stochastic matrix is a convex combination of
permutation matrices, so ``H_res = sum_k w_k P_k`` with ``w = softmax(logits)`` is
*exactly* doubly stochastic (rows and columns sum to 1 up to rounding) with no
iterations, where Sinkhorn's 20 rounds leave a column error. The cost grows with the
number of permutations: all ``n!`` of them while ``n! <= max_permutations`` (exact over
the whole Birkhoff polytope: n <= 4 at the default 24); beyond that, the identity plus
``max_permutations - 1`` permutations drawn once with a seed fixed by n (still exactly
doubly stochastic, but over a subset of the polytope; documented, not hidden).

Initialisation follows the reference implementation (github FFTYYY/mhc-lite,
``hyper_conn/mhc_lite.py``): permutation logits 0 for the identity and -8 for the others
(H_res ~ I at the start), pre and post logits +1 for stream ``layer mod n`` and -1
elsewhere (the one-hot pattern that breaks the streams' symmetry), gates at ``alpha_init``.
The projection starts Xavier-uniform, as this suite's mHC default. Its mixing convention
``out_t = sum_s H[s, t] x_s`` is the transpose of ours; the set of permutations is closed
under transposition, so the family of matrices is the same.
"""

from __future__ import annotations

import itertools
import math
import random
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
from pydantic import Field

from mhc_bench.variants.base import MapKnobs, Variant, projected_maps_flops
from mhc_bench.variants.projected import ProjectedInit, ProjectedMaps

if TYPE_CHECKING:
    from mhc_bench.model import ModelConfig

OTHER_PERMUTATION_LOGIT = -8.0


class MHCLiteKnobs(MapKnobs):
    """``model.mixing`` of ``mhc_lite``."""

    # Permutations in the mixture: all n! while n! <= this, else the identity plus a fixed sample.
    max_permutations: int = Field(default=24, ge=1)


def permutations(n: int, limit: int) -> list[tuple[int, ...]]:
    """The permutations of ``range(n)`` in the mixture, identity first (see the module docstring)."""
    identity = tuple(range(n))
    if math.factorial(n) <= limit:
        return sorted(itertools.permutations(range(n)))
    rng = random.Random(f"mhc_lite/{n}")
    chosen = {identity}
    while len(chosen) < limit:
        chosen.add(tuple(rng.sample(range(n), n)))
    return [identity, *sorted(chosen - {identity})]


class PermutationMixture(nn.Module):
    """``[..., k]`` logits -> ``sum_k softmax(logits)_k P_k``, ``[..., n, n]`` (rows = output streams)."""

    def __init__(self, n: int, perms: list[tuple[int, ...]]) -> None:
        super().__init__()
        mats = torch.zeros(len(perms), n, n)
        for k, perm in enumerate(perms):
            mats[k, torch.arange(n), torch.tensor(perm)] = 1.0  # output i reads input perm[i]
        self.register_buffer("perms", mats, persistent=False)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(logits, dim=-1)
        return torch.einsum("...k,kij->...ij", weights, self.perms.to(weights.dtype))


def _one_hot_logits(n: int, layer_index: int) -> torch.Tensor:
    logits = -torch.ones(n)
    logits[layer_index % n] = 1.0
    return logits


class MHCLite(Variant):
    name = "mhc_lite"
    label = "mHC-lite"
    summary = "mHC-lite: H_res = softmax-weighted mixture of permutation matrices (arXiv:2601.05732)"
    marker = "D"
    color = "#7570b3"
    knobs = MHCLiteKnobs
    no_decay = ("b_pre", "b_post", "b_res")
    projections = ("phi",)
    implementations = {"torch": "ProjectedMaps (reference)",
                       "fast": "ProjectedMaps with the RMSNorm@W kernel"}
    id_names = {"max_permutations": "perms"}

    def build_maps(self, cfg: ModelConfig, layer_index: int) -> nn.Module:
        knobs: MHCLiteKnobs = cfg.mixing  # type: ignore[assignment]
        n = cfg.n_streams
        perms = permutations(n, knobs.max_permutations)
        res = torch.full((len(perms),), OTHER_PERMUTATION_LOGIT)
        res[0] = 0.0  # the identity
        init = ProjectedInit(pre=_one_hot_logits(n, layer_index), post=_one_hot_logits(n, layer_index),
                             res=res, alpha=knobs.alpha_init, projection=nn.init.xavier_uniform_)
        return ProjectedMaps(n, cfg.d_model, knobs.maps, len(perms), PermutationMixture(n, perms), init,
                             knobs.map_norm_eps, cfg.kernels)

    def extra_flops(self, knobs: MHCLiteKnobs, n: int, d_model: int) -> int:  # type: ignore[override]
        """The projection onto ``2n + k`` logits and the mixes, plus the mixture (``2 k n^2`` a token,
        forward + backward ~3x)."""
        if n <= 1:
            return 0
        k = len(permutations(n, knobs.max_permutations))
        mixture = 6 * k * n * n if "res" in knobs.maps else 0
        return projected_maps_flops(knobs.maps, n, d_model, k) + mixture
