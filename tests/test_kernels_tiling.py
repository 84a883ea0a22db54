"""The GPU tilings, padded n, int64 offsets and the tf32 tolerance, checked on CPU.

The interpreter runs any tiling, so every GPU tile choice of ``mhc_kernels.configs``
(split-K, channel blocks, token splits, partial sums) is checked here against
``mhc_bench.ops`` by forcing a GPU target; shapes are picked so that every split
and block path is taken while the grids stay small (the interpreter pays per program).
"""

from __future__ import annotations

import contextlib
import warnings

import mhc_kernels
import pytest
import torch
import triton
import triton.language as tl
from mhc_kernels import maps, stream
from mhc_kernels._launch import Target, forced_target, tile_start
from test_kernels import DEVICE, _on_test_device, check_fn, maps_inputs

from mhc_bench import ops
from mhc_bench.model import GPT, ModelConfig

__all__ = ["_on_test_device"]  # autouse: every tensor on the test device (see test_kernels.py)
SM90 = Target(90, 132)
SM80_SMALL = Target(80, 2)  # few SMs: fewer splits, other grid shapes


@pytest.mark.parametrize("target", [SM90, SM80_SMALL], ids=["sm90", "sm80-2sm"])
@pytest.mark.parametrize("n", [3, 4])
def test_maps_gpu_tiling_matches_reference(n: int, target: Target) -> None:
    """Split-K projection, BE-token Sinkhorn tiles, token-split dx/dphi with partial sums."""
    torch.manual_seed(40 + n)
    T, C = 150, 96
    with forced_target(target):
        if target is SM90:  # the shape must take the split paths this test is about
            assert maps.fwd_splits(T, n * C, n, target)[1] > 1
            assert maps.bwd_splits(T, n * C, n, target)[1] > 1
        check_fn(lambda *a: mhc_kernels.mhc_maps(*a, 6), lambda *a: ops.mhc_maps(*a, 6),
                 maps_inputs((T,), n, C, torch.float32), torch.float32)


@pytest.mark.parametrize("n", [3, 8])
def test_stream_gpu_tiling_matches_reference(n: int) -> None:
    """One token per program, several channel blocks, partial map gradients summed in torch."""
    torch.manual_seed(50 + n)
    T, C = 9, 600  # BC is 512 (n = 3) or 256 (n = 8): 2-3 channel blocks, the last one ragged
    with forced_target(SM90):
        assert stream.channel_blocks(C, n, SM90) > 1
        x = torch.randn(T, n, C)
        check_fn(mhc_kernels.stream_pre, ops.stream_pre, [torch.rand(T, n), x], torch.float32)
        check_fn(mhc_kernels.stream_post_res, ops.stream_post_res,
                 [torch.rand(T, n, n), x, torch.rand(T, n) * 2, torch.randn(T, C)], torch.float32)


def test_bf16_stream_fp32_maps_under_gpu_tiling() -> None:
    """bf16-true stream and bf16 layer output on the GPU tiles (one rounding per output)."""
    torch.manual_seed(60)
    T, n, C = 5, 4, 520
    with forced_target(SM90):
        bf = torch.bfloat16
        check_fn(mhc_kernels.stream_post_res, ops.stream_post_res,
                 [torch.rand(T, n, n), torch.randn(T, n, C).to(bf), torch.rand(T, n) * 2,
                  torch.randn(T, C).to(bf)], bf)
        check_fn(lambda *a: mhc_kernels.mhc_maps(*a, 4), lambda *a: ops.mhc_maps(*a, 4),
                 maps_inputs((33,), n, 40, bf), bf)


@pytest.mark.parametrize("n", [3, 5, 6])
def test_non_power_of_two_n_is_padded(n: int) -> None:
    """n = 3, 5, 6 pad to 4 / 8 streams inside the kernels; results match the reference exactly."""
    torch.manual_seed(70 + n)
    check_fn(lambda *a: mhc_kernels.mhc_maps(*a, 20), lambda *a: ops.mhc_maps(*a, 20),
             maps_inputs((23,), n, 16, torch.float32, scale=3.0), torch.float32)
    x = torch.randn(2, 11, n, 24)
    check_fn(mhc_kernels.stream_pre, ops.stream_pre, [torch.rand(2, 11, n), x], torch.float32)
    check_fn(mhc_kernels.stream_post_res, ops.stream_post_res,
             [torch.rand(2, 11, n, n), x, torch.rand(2, 11, n), torch.randn(2, 11, 24)], torch.float32)


@pytest.mark.parametrize("target", [None, SM90], ids=["interpreter", "sm90"])
def test_zero_tokens(target: Target | None) -> None:
    """An empty batch launches nothing: empty outputs, zero parameter gradients (not garbage)."""
    with forced_target(target) if target else contextlib.nullcontext():
        inputs = [t.requires_grad_(True) for t in maps_inputs((0,), 4, 8, torch.float32)]
        outs = mhc_kernels.mhc_maps(*inputs, 3)
        assert [tuple(o.shape) for o in outs] == [(0, 4), (0, 4), (0, 4, 4)]
        grads = torch.autograd.grad(sum(o.sum() for o in outs), inputs)
        assert grads[0].shape == (0, 32) and all(torch.equal(g, torch.zeros_like(g)) for g in grads[1:])
        h, x, y = torch.rand(0, 4), torch.randn(0, 4, 8), torch.randn(0, 8)
        assert mhc_kernels.stream_pre(h, x).shape == (0, 8)
        assert mhc_kernels.stream_post_res(torch.rand(0, 4, 4), x, h, y).shape == (0, 4, 8)


def test_model_with_three_streams_trains_identically_with_triton() -> None:
    def losses(kernels: str) -> list[float]:
        torch.manual_seed(0)
        cfg = ModelConfig.of("mhc", vocab_size=64, n_layer=1, d_model=16, n_head=2, seq_len=8,
                          n_streams=3, kernels=kernels, alpha_init=0.5)
        model = GPT(cfg)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        idx = torch.randint(0, 64, (2, 9), generator=torch.Generator(DEVICE).manual_seed(1))
        out = []
        for _ in range(3):
            _, loss = model(idx[:, :-1], idx[:, 1:])
            opt.zero_grad()
            loss.backward()
            opt.step()
            out.append(loss.item())
        return out

    torch.testing.assert_close(losses("triton"), losses("torch"), rtol=1e-4, atol=1e-5)


@triton.jit
def _offsets(out_ptr, first_pid, BLOCK: tl.constexpr, stride, INT64: tl.constexpr):  # noqa: N803
    """Store the tile start of program ``first_pid + program_id`` (the kernels' address math)."""
    pid = first_pid + tl.program_id(0)
    # INT64 off: what the kernels did before, int32 products.
    start = tile_start(pid, BLOCK, stride) if INT64 else (pid * BLOCK * stride).to(tl.int64)
    tl.store(out_ptr + tl.program_id(0), start)


def test_tile_offsets_above_2_31_are_exact() -> None:
    """At paper scale (n = 4, C = 4096: 16384 values per token) the tile of token 2^17 starts at 2^31."""
    stride, block = 4 * 4096, 16
    first = (2**31 // (block * stride)) - 1  # the programs around the 2^31 boundary
    got = torch.zeros(3, dtype=torch.int64)
    _offsets[(3,)](got, first, BLOCK=block, stride=stride, INT64=True)
    want = torch.tensor([(first + i) * block * stride for i in range(3)], dtype=torch.int64)
    assert want.max() >= 2**31
    assert torch.equal(got, want)
    # The same math in int32 wraps: the check above can fail.
    wrapped = torch.zeros(3, dtype=torch.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy may warn about the overflow
        _offsets[(3,)](wrapped, first, BLOCK=block, stride=stride, INT64=False)
    assert not torch.equal(wrapped, want)


def _round_tf32(t: torch.Tensor) -> torch.Tensor:
    """Round fp32 to tf32 (10 mantissa bits, nearest even), as tensor cores read fp32 inputs."""
    bits = t.contiguous().view(torch.int32)
    bias = ((bits >> 13) & 1) + 0x0FFF
    return ((bits + bias) & ~0x1FFF).view(torch.float32)


def test_documented_tf32_tolerance_of_the_maps() -> None:
    """``MHC_KERNELS_DOT=tf32`` rounds x and phi to tf32: the maps stay within 2e-3 of fp32.

    The default (tf32x3) is accurate to fp32 rounding; this bounds the faster opt-in mode,
    documented in ``mhc_kernels._launch``. Large gates (alpha = 1) make it a worst case.
    """
    torch.manual_seed(80)
    x, phi, _, b_pre, b_post, b_res = maps_inputs((256,), 4, 512, torch.float32)
    alpha = torch.ones(3)
    exact = ops.mhc_maps(x, phi, alpha, b_pre, b_post, b_res, 20)
    rounded = ops.mhc_maps(_round_tf32(x), _round_tf32(phi), alpha, b_pre, b_post, b_res, 20)
    for e, r in zip(exact, rounded, strict=True):
        err = (e - r).abs().max().item()
        assert 0 < err < 2e-3, err

