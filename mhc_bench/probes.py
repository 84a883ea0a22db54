"""Stability probes: the residual maps of a forward pass and their Amax gains.

Definitions (mHC paper Sec. 3 / Fig. 3 and 7; see MHC_NOTES.md for the pitfalls):

- The maps are every residual layer's ``H_res`` in input-to-output order
  (attention and MLP layers counted separately), ``[L, B, T, n, n]``, rows =
  output streams, so ``x_next = H_res @ x``.
- Forward gain of a matrix M: ``max_i |sum_j M_ij|`` (absolute value of the
  signed row sum, the paper's wording, not ``sum_j |M_ij|``).
- Backward gain: ``max_j |sum_i M_ij|`` (absolute column sum).
- Gains are computed **per token, then averaged** over the B*T tokens
  (the paper's Fig. 8 averages matrices first; we do not).
- Composite forward at layer l: ``P_l = H_l ... H_1 H_0`` (everything a signal
  entering at the bottom has gone through by the output of layer l);
  composite backward at layer l: ``Q_l = H_{L-1} ... H_l`` (everything a
  gradient from the top passes on its way down to layer l). The forward
  gain is taken of ``P_l``, the backward gain of ``Q_l``.
- A max hides attenuation, so per layer we also report the minimum column
  sum and ``max_j |log |sum_i M_ij|||`` of the single map and of ``Q_l``.

All products run in float64 so that large HC gains are not lost to rounding.
"""

from __future__ import annotations

from typing import Any

import torch

from mhc_bench.model import GPT


@torch.no_grad()
def residual_maps(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    """Every residual layer's H_res from one forward pass: ``[L, B, T, n, n]``.

    The maps are the ones the forward pass that produced the logits used
    (recorded inside each layer), not a re-implementation. Baseline layers
    record identity 1x1 maps.
    """
    was_training = model.training
    model.eval()
    try:
        with model.recording_maps() as record:
            model(idx)
    finally:
        model.train(was_training)
    return torch.stack([m.expand(*idx.shape, *m.shape[-2:]) for m in record])


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
    fwd, bwd = [maps[0]], [maps[L - 1]]
    for layer in range(1, L):
        fwd.append(maps[layer] @ fwd[-1])
        bwd.append(bwd[-1] @ maps[L - 1 - layer])
    return torch.stack(fwd), torch.stack(bwd[::-1])


def amax_gain(maps: torch.Tensor) -> dict[str, Any]:
    """Amax gain magnitudes of ``maps [L, ..., n, n]`` (definitions in the module docstring).

    Returns per-layer lists ``single_fwd``, ``single_bwd``, ``single_min_col``,
    ``single_max_abs_log_col``, ``composite_fwd`` (of P_l), ``composite_bwd``,
    ``composite_min_col``, ``composite_max_abs_log_col`` (of Q_l), plus the
    scalars ``max_*`` over layers, ``min_*_min_col`` and the layer-0 values
    ``layer0_fwd`` / ``layer0_bwd`` (HC's instability usually starts there).
    """
    maps = maps.double()
    P, Q = composite_products(maps)
    single, comp_fwd, comp_bwd = _stats(maps), _stats(P), _stats(Q)
    out: dict[str, Any] = {
        "single_fwd": single["fwd"],
        "single_bwd": single["bwd"],
        "single_min_col": single["min_col"],
        "single_max_abs_log_col": single["max_abs_log_col"],
        "composite_fwd": comp_fwd["fwd"],
        "composite_bwd": comp_bwd["bwd"],
        "composite_min_col": comp_bwd["min_col"],
        "composite_max_abs_log_col": comp_bwd["max_abs_log_col"],
    }
    for key in ("single_fwd", "single_bwd", "composite_fwd", "composite_bwd",
                "single_max_abs_log_col", "composite_max_abs_log_col"):
        out[f"max_{key}"] = max(out[key])
    out["min_single_min_col"] = min(out["single_min_col"])
    out["min_composite_min_col"] = min(out["composite_min_col"])
    out["layer0_fwd"] = out["single_fwd"][0]
    out["layer0_bwd"] = out["single_bwd"][0]
    return out


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
