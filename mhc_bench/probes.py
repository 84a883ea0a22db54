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
- **Projection convergence** (every layer whose H_res is a projection of logits):
  ``col_err[l]`` = per token ``max_j |sum_i H_ij - 1|``, averaged over tokens (how far the
  columns are from doubly stochastic after the last Sinkhorn iteration; rows are exact by
  construction), and ``logit_span[l]`` = per token ``max - min`` of the layer's H_res logits,
  the median over tokens (Sinkhorn's convergence slows with the span). For Sinkhorn maps the
  final probe also finds ``sinkhorn_iters_needed[l]``: the median over tokens of the
  iterations a float64 log-domain Sinkhorn needs to bring ``col_err`` below
  :data:`CONVERGED_COL_ERR` (``None`` beyond :data:`MAX_SINKHORN_ITERS`).

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

CONVERGED_COL_ERR = 1e-3  # column sums within 0.1 % of 1: "converged"
MAX_SINKHORN_ITERS = 5000  # the search for the iterations a layer needs stops here

__all__ = ["PROBE_VERSION", "amax_gain", "probe_model", "residual_maps", "stream_spread"]


@dataclass
class ForwardProbe:
    """What one forward pass recorded per layer: H_res, the output's per-token stream spread, the H_res
    logits flattened per token (None where the maps have none) and, for Sinkhorn maps, the logits as
    ``[..., n, n]`` matrices (None otherwise)."""

    maps: list[torch.Tensor] = field(default_factory=list)
    spread: list[torch.Tensor] = field(default_factory=list)
    logits: list[torch.Tensor | None] = field(default_factory=list)
    sinkhorn_logits: list[torch.Tensor | None] = field(default_factory=list)

    def __call__(self, layer: torch.nn.Module, x: torch.Tensor, h_res: torch.Tensor,
                 x_next: torch.Tensor) -> None:
        self.maps.append(h_res.detach())
        self.spread.append(stream_spread(x_next.detach()))
        res_logits = getattr(layer.maps, "res_logits", None)
        lg = None if res_logits is None else res_logits(x.detach())
        matrix = lg is not None and lg.dim() == h_res.dim() and lg.shape[-2:] == h_res.shape[-2:]
        self.logits.append(lg.flatten(-2) if matrix else lg)
        sinkhorn = matrix and getattr(layer.maps, "sinkhorn_iters", None) is not None
        self.sinkhorn_logits.append(lg if sinkhorn else None)


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


def column_error(maps: torch.Tensor) -> list[float]:
    """Per layer, the token mean of ``max_j |sum_i H_ij - 1|`` of ``maps [L, ..., n, n]``."""
    cols = maps.double().sum(dim=-2)
    return _token_mean((cols - 1).abs().amax(dim=-1))


def logit_span(logits: torch.Tensor | None) -> float | None:
    """The median over tokens of one layer's per-token logit span (max - min); ``logits [..., k]``."""
    if logits is None:
        return None
    flat = logits.double()
    span = flat.amax(dim=-1) - flat.amin(dim=-1)
    return float(span.flatten().median())


def iterations_to_converge(logits: torch.Tensor, cap: int = MAX_SINKHORN_ITERS,
                           tol: float = CONVERGED_COL_ERR) -> int | None:
    """Median over tokens of the log-domain Sinkhorn iterations (column then row normalisation, in
    float64) after which ``max_j |col sum_j - 1| < tol``; None when the median token needs more than
    ``cap``."""
    z = logits.double().reshape(-1, *logits.shape[-2:])
    needed = torch.full((z.shape[0],), cap + 1, dtype=torch.long)
    done = torch.zeros(z.shape[0], dtype=torch.bool)
    for it in range(1, cap + 1):
        z = z - torch.logsumexp(z, dim=-2, keepdim=True)
        z = z - torch.logsumexp(z, dim=-1, keepdim=True)
        err = (z.exp().sum(dim=-2) - 1).abs().amax(dim=-1)
        newly = (err < tol) & ~done
        needed[newly] = it
        done |= newly
        if bool(done.float().mean() >= 0.5) and int(needed.median()) <= it:
            break
    median = int(needed.median())
    return None if median > cap else median


def convergence_summary(record: ForwardProbe, maps: torch.Tensor, final: bool) -> dict[str, Any]:
    """Column error and logit span per layer (and, for the final probe, Sinkhorn's iterations needed)."""
    spans = [logit_span(lg) for lg in record.logits]
    known = [s for s in spans if s is not None]
    out: dict[str, Any] = {"col_err": column_error(maps), "logit_span": spans,
                           "max_logit_span": max(known) if known else None}
    out["max_col_err"] = max(out["col_err"])
    if final:
        sinkhorn = [lg for lg in record.sinkhorn_logits if lg is not None]
        needed = [None if lg is None else iterations_to_converge(lg) for lg in record.sinkhorn_logits]
        out["sinkhorn_iters_needed"] = needed
        # None when no layer has Sinkhorn maps; MAX + 1 stands for "beyond the search".
        out["max_sinkhorn_iters_needed"] = (
            max(MAX_SINKHORN_ITERS + 1 if n is None else n for n, lg in zip(needed, record.sinkhorn_logits,
                                                                           strict=True) if lg is not None)
            if sinkhorn else None)
    return out


def probe_model(model: GPT, idx: torch.Tensor, final: bool = False) -> dict[str, Any]:
    """Every stability probe of one forward pass on ``idx``: gains, spreads, projection convergence and
    ``probe_version``; ``final`` adds the (slower) search for Sinkhorn's iterations needed."""
    record = record_forward(model, idx)
    maps = _stacked(record.maps, idx)
    gains = amax_gain(maps)
    return {**gains, **spread_summary(record.spread), **convergence_summary(record, maps, final),
            "probe_version": PROBE_VERSION}


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
