"""Sinkhorn-Knopp projection: doubly stochastic output, exact gradients, reference match."""

from __future__ import annotations

import pytest
import torch

from mhc_bench.ops import sinkhorn_knopp


def plain_loop_sinkhorn(logits: torch.Tensor, iters: int) -> torch.Tensor:
    """Eq. 12 written literally: M = exp(logits), then column- and row-normalise ``iters`` times."""
    m = logits.double().exp()
    for _ in range(iters):
        m = m / m.sum(dim=-2, keepdim=True)
        m = m / m.sum(dim=-1, keepdim=True)
    return m


@pytest.mark.parametrize("n", [1, 2, 4, 8])
def test_rows_exact_columns_converge(n: int) -> None:
    torch.manual_seed(0)
    logits = torch.randn(64, n, n)
    col_err = []
    for iters in (1, 5, 20, 200):
        h = sinkhorn_knopp(logits, iters)
        assert (h >= 0).all()
        assert torch.allclose(h.sum(-1), torch.ones(64, n), atol=1e-6)
        col_err.append((h.sum(-2) - 1).abs().max().item())
    # the column error shrinks with the number of iterations
    assert col_err[3] <= col_err[2] <= col_err[1] <= col_err[0] + 1e-7
    assert col_err[3] < 1e-4


def test_matches_plain_loop_reference() -> None:
    torch.manual_seed(1)
    logits = torch.randn(3, 5, 4, 4) * 3
    expected = plain_loop_sinkhorn(logits, 20)
    got = sinkhorn_knopp(logits.double(), 20)
    assert got.shape == (3, 5, 4, 4)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_gradcheck_float64() -> None:
    torch.manual_seed(2)
    logits = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: sinkhorn_knopp(z, 7), (logits,))


def test_low_precision_accumulates_in_float32() -> None:
    torch.manual_seed(3)
    logits = torch.randn(16, 4, 4)
    h16 = sinkhorn_knopp(logits.to(torch.bfloat16), 20)
    assert h16.dtype == torch.bfloat16
    ref = sinkhorn_knopp(logits.to(torch.bfloat16).float(), 20)
    torch.testing.assert_close(h16.float(), ref, atol=1e-2, rtol=0)


def test_rejects_zero_iterations() -> None:
    with pytest.raises(ValueError, match="iters"):
        sinkhorn_knopp(torch.zeros(2, 2), 0)
