"""Amax gain definitions on hand-built and random matrices."""

from __future__ import annotations

import math

import torch

from mhc_bench.ops import sinkhorn_knopp
from mhc_bench.probes import amax_gain, composite_products, grad_norms


def test_hand_built_unconstrained_matrices() -> None:
    # rows = output streams; row sums (3, -5) -> forward gain 5; column sums (2, -4) -> backward 4
    m = torch.tensor([[1.0, 2.0], [1.0, -6.0]])
    g = amax_gain(m.expand(1, 1, 1, 2, 2))
    assert g["single_fwd"] == [5.0]
    assert g["single_bwd"] == [4.0]
    assert g["single_min_col"] == [-4.0]
    assert abs(g["single_max_abs_log_col"][0] - math.log(4.0)) < 1e-12


def test_signed_row_sum_not_sum_of_absolutes() -> None:
    m = torch.tensor([[3.0, -3.0], [0.5, 0.5]])
    assert amax_gain(m.expand(1, 1, 1, 2, 2))["single_fwd"] == [1.0]


def test_composites_are_ordered_products() -> None:
    torch.manual_seed(0)
    maps = torch.randn(3, 1, 1, 2, 2, dtype=torch.float64)
    P, Q = composite_products(maps)
    H0, H1, H2 = maps[0, 0, 0], maps[1, 0, 0], maps[2, 0, 0]
    torch.testing.assert_close(P[2, 0, 0], H2 @ H1 @ H0)
    torch.testing.assert_close(P[1, 0, 0], H1 @ H0)
    torch.testing.assert_close(Q[0, 0, 0], H2 @ H1 @ H0)
    torch.testing.assert_close(Q[1, 0, 0], H2 @ H1)
    torch.testing.assert_close(Q[2, 0, 0], H2)


def test_scaled_identity_gains_compound() -> None:
    maps = (2.0 * torch.eye(3)).expand(4, 2, 5, 3, 3)
    g = amax_gain(maps)
    assert g["composite_fwd"] == [16.0, 8.0, 4.0, 2.0]  # suffix products Q_l, the paper's
    assert g["composite_bwd"] == [16.0, 8.0, 4.0, 2.0]
    assert g["prefix_fwd"] == [2.0, 4.0, 8.0, 16.0]  # prefix products P_l, an extra
    assert g["max_composite_fwd"] == 16.0 and g["layer0_fwd"] == 2.0


def test_composite_gains_are_of_the_suffix_product_on_signed_random_maps() -> None:
    """Both composite gains of Q_l = H_{L-1} ... H_l, computed by hand per token then averaged."""
    torch.manual_seed(5)
    L, tokens, n = 4, 3, 3
    maps = torch.randn(L, 1, tokens, n, n, dtype=torch.float64)
    g = amax_gain(maps)
    for layer in range(L):
        fwd, bwd, prefix = [], [], []
        for t in range(tokens):
            Q = torch.eye(n, dtype=torch.float64)
            for i in range(layer, L):
                Q = maps[i, 0, t] @ Q
            P = torch.eye(n, dtype=torch.float64)
            for i in range(layer + 1):
                P = maps[i, 0, t] @ P
            fwd.append(Q.sum(dim=1).abs().max().item())
            bwd.append(Q.sum(dim=0).abs().max().item())
            prefix.append(P.sum(dim=1).abs().max().item())
        assert math.isclose(g["composite_fwd"][layer], sum(fwd) / tokens, rel_tol=1e-12)
        assert math.isclose(g["composite_bwd"][layer], sum(bwd) / tokens, rel_tol=1e-12)
        assert math.isclose(g["prefix_fwd"][layer], sum(prefix) / tokens, rel_tol=1e-12)
    # the prefix and suffix profiles differ on signed maps, and share only the full product
    assert g["composite_fwd"] != g["prefix_fwd"]
    assert math.isclose(g["composite_fwd"][0], g["prefix_fwd"][-1], rel_tol=1e-12)


def test_stream_spread_is_zero_for_copies_and_scale_free() -> None:
    from mhc_bench.probes import stream_spread

    e = torch.randn(2, 5, 1, 8)
    assert torch.all(stream_spread(e.expand(2, 5, 4, 8)) < 1e-7)
    x = torch.randn(2, 5, 4, 8)
    torch.testing.assert_close(stream_spread(3.0 * x), stream_spread(x))
    # two opposite streams: the mean is 0, every bit of the norm is spread
    pair = torch.stack([e[..., 0, :], -e[..., 0, :]], dim=-2)
    torch.testing.assert_close(stream_spread(pair), torch.ones(2, 5, dtype=torch.float64))


def test_gains_are_per_token_then_averaged() -> None:
    maps = torch.stack([torch.eye(2), 3 * torch.eye(2)]).reshape(1, 1, 2, 2, 2)  # two tokens
    assert amax_gain(maps)["single_fwd"] == [2.0]


def test_doubly_stochastic_products_stay_bounded() -> None:
    torch.manual_seed(1)
    maps = sinkhorn_knopp(torch.randn(24, 4, 8, 4, 4, dtype=torch.float64) * 3, 50)
    g = amax_gain(maps)
    assert g["max_composite_fwd"] <= 1 + 1e-6
    assert g["max_composite_bwd"] <= 1 + 1e-3  # columns are only approximately 1
    assert g["min_composite_min_col"] > 0.99


def test_grad_norms_split_maps_from_the_rest() -> None:
    from mhc_bench.model import GPT, ModelConfig

    cfg = ModelConfig.of("mhc", vocab_size=20, n_layer=1, d_model=8, n_head=2, seq_len=6, n_streams=2)
    model = GPT(cfg)
    idx = torch.randint(0, 20, (2, 6))
    model(idx, idx)[1].backward()
    norms = grad_norms(model)
    assert norms["grad_norm_maps"] > 0 and norms["grad_norm_rest"] > 0
    total = torch.cat([p.grad.flatten() for p in model.parameters()]).norm().item()
    assert abs(norms["grad_norm"] - total) < 1e-5
