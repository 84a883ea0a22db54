"""Initial values of mHC's static biases, gates and map projection: named presets.

The mHC paper does not give them and the public implementations disagree
(MHC_NOTES.md section 2b), so the choice is a named, documented config value
(``ModelConfig.init``) rather than a hidden constant. Each preset follows one
reference; the maps it gives at initialisation (when the gated dynamic part
is negligible) are:

============== ============================ =============== ======================== =================
preset         H_pre                        H_post          H_res                    projection, alpha
============== ============================ =============== ======================== =================
megatron       sigmoid(0) = 0.5             2 sigmoid(0)=1  uniform 1/n (0 logits)   Xavier, alpha_init
liger          0.5                          1               uniform 1/n              N(0, 0.02), 1.0
lucidrains     sigmoid(1)=0.73 on stream    2 sigmoid(1)    Sinkhorn(I logits):      zeros, alpha_init
               l mod n, 0.5 elsewhere       = 1.46          e/(e+n-1) on diagonal
near_identity  0.5                          1               0.99 on the diagonal     Xavier, alpha_init
onehot         sigmoid(+-1): 0.73 on stream 2 sigmoid(+-1):   0.99 on the diagonal     Xavier, alpha_init
               l mod n, 0.27 elsewhere      1.46 / 0.54
============== ============================ =============== ======================== =================

(Megatron-LM's hyper_connection.py, Liger-Kernel's mhc ops, lucidrains'
hyper-connections; ``near_identity`` is the strong-diagonal H_res that
tokenbender's reproduction uses; ``onehot`` takes mHC-lite's reference pre/post
logits, +1 for stream ``layer mod n`` and -1 elsewhere, the pattern that breaks
the streams' symmetry from the first layer, with the near-identity H_res that
lets the streams keep apart.) Identity logits through Sinkhorn keep only
0.475 on the diagonal at n = 4 and pull the streams towards each other about
3x per layer; uniform H_res averages them outright; ``near_identity`` lets
them keep apart. HC keeps the HC paper's own initialisation (static H_res =
I, one-hot H_pre, H_post = 1, zero dynamic weights) whatever the preset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

NEAR_IDENTITY_DIAGONAL = 0.99


@dataclass(frozen=True)
class MapInit:
    """One preset: bias logits, projection initialiser and gate value."""

    pre: str  # "zero" | "one_hot" (logit 1 on stream ``layer mod n``, 0 elsewhere) | "signed_one_hot" (+-1)
    post_logit: float | str  # a logit for every stream, or "signed_one_hot"
    res: str  # "uniform" (zero logits) | "identity" (I logits) | "near_identity"
    projection: str  # "xavier" | "normal" (std 0.02) | "zeros"
    alpha: float | None  # None: ModelConfig.alpha_init


PRESETS: dict[str, MapInit] = {
    "megatron": MapInit(pre="zero", post_logit=0.0, res="uniform", projection="xavier", alpha=None),
    "liger": MapInit(pre="zero", post_logit=0.0, res="uniform", projection="normal", alpha=1.0),
    "lucidrains": MapInit(pre="one_hot", post_logit=1.0, res="identity", projection="zeros", alpha=None),
    "near_identity": MapInit(pre="zero", post_logit=0.0, res="near_identity", projection="xavier",
                             alpha=None),
    "onehot": MapInit(pre="signed_one_hot", post_logit="signed_one_hot", res="near_identity",
                      projection="xavier", alpha=None),
}


def _signed_one_hot(n: int, layer_index: int) -> torch.Tensor:
    logits = -torch.ones(n)
    logits[layer_index % n] = 1.0
    return logits


def pre_logits(preset: MapInit, n: int, layer_index: int) -> torch.Tensor:
    if preset.pre == "one_hot":
        return nn.functional.one_hot(torch.tensor(layer_index % n), n).float()
    if preset.pre == "signed_one_hot":
        return _signed_one_hot(n, layer_index)
    return torch.zeros(n)


def post_logits(preset: MapInit, n: int, layer_index: int = 0) -> torch.Tensor:
    if preset.post_logit == "signed_one_hot":
        return _signed_one_hot(n, layer_index)
    return torch.full((n,), float(preset.post_logit))


def res_logits(preset: MapInit, n: int) -> torch.Tensor:
    """``[n, n]`` logits; ``near_identity`` solves ``e^d / (e^d + n - 1) = 0.99`` for the diagonal d."""
    if preset.res == "uniform" or n == 1:
        return torch.zeros(n, n)
    if preset.res == "identity":
        return torch.eye(n)
    d = NEAR_IDENTITY_DIAGONAL
    return math.log(d * (n - 1) / (1 - d)) * torch.eye(n)


def init_projection(preset: MapInit, phi: torch.Tensor) -> None:
    """Fill the ``[n*C, width]`` map projection in place."""
    with torch.no_grad():
        if preset.projection == "xavier":
            nn.init.xavier_uniform_(phi)
        elif preset.projection == "normal":
            nn.init.normal_(phi, std=0.02)
        else:
            nn.init.zeros_(phi)
