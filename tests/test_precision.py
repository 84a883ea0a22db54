"""Precision policy under bf16 autocast, on every path: fp32 maps, fp32 residual carry.

Under Lightning's ``bf16-mixed`` the baseline's ``x + F(x)`` keeps its fp32 carry; the
n-stream update must do the same (``mhc_bench.ops`` docstring), or the comparison with the
baseline would be unfair and results would depend on the code path. A bf16 rounding of the
carry is a relative error of ~4e-3 per layer; the checks below allow 1e-6.
"""

from __future__ import annotations

import pytest
import torch

from mhc_bench.dispatch import pick, stream_ops
from mhc_bench.model import GPT, ModelConfig
from mhc_bench.variants.mhc import MHCMaps

# triton runs under the CPU interpreter (conftest)
PATHS = ("torch", "compile", pytest.param("triton", marks=pytest.mark.triton))
AUTOCAST = {"device_type": "cpu", "dtype": torch.bfloat16}


def _maps_inputs(n: int, width: int, tokens: int) -> list[torch.Tensor]:
    torch.manual_seed(0)
    x = torch.randn(tokens, n * width)
    phi = torch.randn(n * width, 2 * n + n * n) / (n * width) ** 0.5
    return [x, phi, torch.tensor([0.5, 0.4, 0.7]), torch.randn(n), torch.randn(n), torch.randn(n, n)]


@pytest.mark.parametrize("path", PATHS)
def test_maps_are_fp32_under_bf16_autocast(path: str) -> None:
    mhc_maps = MHCMaps.FULL[pick(path, "cpu", MHCMaps.FULL)]
    inputs = _maps_inputs(4, 16, 24)
    reference = MHCMaps.FULL["torch"](*(t.double() for t in inputs), 20, 1e-20)
    with torch.autocast(**AUTOCAST):
        maps = mhc_maps(*inputs, 20, 1e-20)
    for got, want in zip(maps, reference, strict=True):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("path", PATHS)
def test_stream_mixing_keeps_an_fp32_carry_under_bf16_autocast(path: str) -> None:
    ops = stream_ops(path, "cpu")
    torch.manual_seed(1)
    n, C, tokens = 4, 32, 24
    x = torch.randn(tokens, n, C)  # the fp32 residual stream
    h_res = torch.softmax(torch.randn(tokens, n, n), dim=-1)
    h_pre, h_post = torch.rand(tokens, n), 2 * torch.rand(tokens, n)
    y = torch.randn(tokens, C).to(torch.bfloat16)  # F's output under autocast
    with torch.autocast(**AUTOCAST):
        mixed = ops.stream_post_res(h_res, x, h_post, y)
        read = ops.stream_pre(h_pre, x)
    assert mixed.dtype == torch.float32 and read.dtype == torch.float32
    exact = h_res.double() @ x.double() + h_post.double()[..., None] * y.double()[..., None, :]
    torch.testing.assert_close(mixed.double(), exact, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(read.double(), torch.einsum("tn,tnc->tc", h_pre.double(), x.double()),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("residual", ["hc", "mhc"])
def test_a_layer_under_autocast_returns_an_fp32_stream_and_fp32_maps(residual: str) -> None:
    cfg = ModelConfig.of(residual, vocab_size=64, n_layer=1, d_model=16, n_head=2, seq_len=8,
                      n_streams=4, kernels="torch")
    layer = GPT(cfg).layers[0]
    x = torch.randn(2, 8, 4, 16)
    with torch.autocast(**AUTOCAST):
        maps = layer.maps(x)
        out = layer(x)
    assert all(m.dtype == torch.float32 for m in maps)
    assert out.dtype == torch.float32
