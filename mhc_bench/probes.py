"""Stability probes: the residual maps of a forward pass, their Amax gains, and stream spread.

Definitions (mHC paper Sec. 3.1, captions of Fig. 3 and 7; MHC_NOTES.md section 2):

- The maps are every residual layer's ``H_res`` in input-to-output order
  (attention and MLP layers counted separately: L = 2 x blocks),
  ``[L, B, T, n, n]``, rows = output streams, so ``x_next = H_res @ x``.
- Forward gain of a matrix M: ``max_i |sum_j M_ij|`` (absolute value of the
  signed row sum, the paper's wording, not ``sum_j |M_ij|``).
- Backward gain: ``max_j |sum_i M_ij|`` (absolute column sum).
- Gains are computed **per token, then averaged** over the B*T tokens
  (the paper's Fig. 8 averages matrices first; we do not).
- **Composite gains (the paper's):** both come from the same suffix product
  ``Q_l = H_{L-1} ... H_{l+1} H_l`` (from layer l to the top):
  ``composite_fwd[l]`` = forward gain of ``Q_l``, ``composite_bwd[l]`` =
  backward gain of ``Q_l``. Their maxima over l are what C2 and C3 compare
  with the paper's Fig. 3b / 7b.
- **Prefix gain (an extra, not the paper's):** ``prefix_fwd[l]`` = forward
  gain of ``P_l = H_l ... H_0``, what the embedding has been through by the
  output of layer l. It shares only ``P_{L-1} = Q_0`` with the paper's curve;
  it is tabulated and plotted apart, never used by a claim.
- A max hides attenuation, so per layer we also report the minimum column
  sum and ``max_j |log |sum_i M_ij|||`` of the single map and of ``Q_l``.
- **Stream spread** after layer l: per token,
  ``||x - mean_i x_i||_F / ||x||_F`` over the n streams of ``x_next`` (0 when
  every stream is the same vector, as they are at the input, where the
  embedding is copied into the n streams; at most 1), averaged over tokens.
  It shows whether the streams separate at all.

All products run in float64 so that large HC gains are not lost to rounding.
``PROBE_VERSION`` names these definitions: a cell whose gains carry another
version (or none) is stale and must be re-probed (``mhc-bench probe``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from mhc_bench.definitions import PROBE_VERSION
from mhc_bench.model import GPT

__all__ = ["PROBE_VERSION", "amax_gain", "probe_model", "residual_maps", "stream_spread"]


@dataclass
class ForwardProbe:
    """What one forward pass recorded: every layer's H_res and its output's per-token stream spread."""

    maps: list[torch.Tensor] = field(default_factory=list)
    spread: list[torch.Tensor] = field(default_factory=list)

    def __call__(self, h_res: torch.Tensor, x_next: torch.Tensor) -> None:
        self.maps.append(h_res.detach())
        self.spread.append(stream_spread(x_next.detach()))


def stream_spread(x: torch.Tensor) -> torch.Tensor:
    """Per-token ``||x - mean_i x_i||_F / ||x||_F`` of ``x [..., n, C]`` -> ``[...]``."""
    x = x.double()
    centred = x - x.mean(dim=-2, keepdim=True)
    norm = x.flatten(-2).norm(dim=-1)
    return centred.flatten(-2).norm(dim=-1) / norm.clamp_min(1e-300)


@torch.no_grad()
def record_forward(model: GPT, idx: torch.Tensor) -> ForwardProbe:
    """Run one eval-mode forward pass on ``idx`` and record the maps and spreads it used."""
    was_training = model.training
    model.eval()
    record = ForwardProbe()
    try:
        with model.probing(record):
            model(idx)
    finally:
        model.train(was_training)
    return record


def residual_maps(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    """Every residual layer's H_res from one forward pass: ``[L, B, T, n, n]``.

    The maps are the ones the forward pass that produced the logits used
    (recorded inside each layer), not a re-implementation. Baseline layers
    record identity 1x1 maps.
    """
    return _stacked(record_forward(model, idx).maps, idx)


def _stacked(maps: list[torch.Tensor], idx: torch.Tensor) -> torch.Tensor:
    """Recorded maps as one ``[L, B, T, n, n]`` tensor (the baseline's 1x1 maps broadcast)."""
    return torch.stack([m.expand(*idx.shape, *m.shape[-2:]) for m in maps])


def _row_col_sums(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return m.sum(dim=-1), m.sum(dim=-2)


def _token_mean(t: torch.Tensor) -> list[float]:
    """Average a per-token statistic ``[L, tokens...]`` over tokens -> one float per layer."""
    return t.flatten(1).mean(dim=1).tolist()


def _stats(mats: torch.Tensor) -> dict[str, list[float]]:
    rows, cols = _row_col_sums(mats)
    abs_cols = cols.abs()
    return {
        "fwd": _token_mean(rows.abs().amax(dim=-1)),
        "bwd": _token_mean(abs_cols.amax(dim=-1)),
        "min_col": _token_mean(cols.amin(dim=-1)),
        "max_abs_log_col": _token_mean(abs_cols.clamp_min(1e-300).log().abs().amax(dim=-1)),
    }


def composite_products(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(P, Q)`` with ``P[l] = H_l ... H_0`` and ``Q[l] = H_{L-1} ... H_l``, per token."""
    maps = maps.double()
    L = maps.shape[0]
    prefix, suffix = [maps[0]], [maps[L - 1]]
    for layer in range(1, L):
        prefix.append(maps[layer] @ prefix[-1])
        suffix.append(suffix[-1] @ maps[L - 1 - layer])
    return torch.stack(prefix), torch.stack(suffix[::-1])


def amax_gain(maps: torch.Tensor) -> dict[str, Any]:
    """Amax gain magnitudes of ``maps [L, ..., n, n]`` (definitions in the module docstring).

    Returns per-layer lists ``single_fwd``, ``single_bwd``, ``single_min_col``,
    ``single_max_abs_log_col``; ``composite_fwd``, ``composite_bwd``,
    ``composite_min_col``, ``composite_max_abs_log_col`` (all of the suffix
    product Q_l, the paper's); ``prefix_fwd`` (of P_l, an extra); the scalars
    ``max_*`` over layers, ``min_*_min_col`` and the layer-0 values
    ``layer0_fwd`` / ``layer0_bwd`` (HC's instability usually starts there).
    """
    maps = maps.double()
    P, Q = composite_products(maps)
    single, suffix, prefix = _stats(maps), _stats(Q), _stats(P)
    out: dict[str, Any] = {
        "single_fwd": single["fwd"],
        "single_bwd": single["bwd"],
        "single_min_col": single["min_col"],
        "single_max_abs_log_col": single["max_abs_log_col"],
        "composite_fwd": suffix["fwd"],
        "composite_bwd": suffix["bwd"],
        "composite_min_col": suffix["min_col"],
        "composite_max_abs_log_col": suffix["max_abs_log_col"],
        "prefix_fwd": prefix["fwd"],
    }
    for key in ("single_fwd", "single_bwd", "composite_fwd", "composite_bwd", "prefix_fwd",
                "single_max_abs_log_col", "composite_max_abs_log_col"):
        out[f"max_{key}"] = max(out[key])
    out["min_single_min_col"] = min(out["single_min_col"])
    out["min_composite_min_col"] = min(out["composite_min_col"])
    out["layer0_fwd"] = out["single_fwd"][0]
    out["layer0_bwd"] = out["single_bwd"][0]
    return out


def spread_summary(spreads: list[torch.Tensor]) -> dict[str, Any]:
    """Per-layer token means of the stream spreads, their max and the last layer's value."""
    per_layer = [float(s.mean()) for s in spreads]
    return {"stream_spread": per_layer, "max_stream_spread": max(per_layer),
            "final_stream_spread": per_layer[-1]}


def probe_model(model: GPT, idx: torch.Tensor) -> dict[str, Any]:
    """Every stability probe of one forward pass on ``idx``: gains, spreads and ``probe_version``."""
    record = record_forward(model, idx)
    gains = amax_gain(_stacked(record.maps, idx))
    return {**gains, **spread_summary(record.spread), "probe_version": PROBE_VERSION}


def grad_norms(model: GPT) -> dict[str, float]:
    """L2 norms of the current gradients: all parameters, the residual maps, the rest."""
    map_ids = {id(p) for p in model.map_parameters()}
    sq = {"maps": 0.0, "rest": 0.0}
    for p in model.parameters():
        if p.grad is None:
            continue
        sq["maps" if id(p) in map_ids else "rest"] += float(p.grad.detach().double().pow(2).sum())
    return {
        "grad_norm": (sq["maps"] + sq["rest"]) ** 0.5,
        "grad_norm_maps": sq["maps"] ** 0.5,
        "grad_norm_rest": sq["rest"] ** 0.5,
    }
