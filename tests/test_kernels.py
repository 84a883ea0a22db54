"""Fused Triton kernels (``mhc_kernels``) against the torch reference, under the CPU interpreter.

Every test draws fresh random inputs, compares the forward outputs and every
input gradient with autograd through ``mhc_bench.ops``, and covers odd token
counts, extra leading dims, n in {1, 2, 4, 8}, fp32 and bf16. ``make gpu-check``
runs the same tests compiled for a GPU: ``MHC_KERNELS_TEST_DEVICE=cuda`` with
``TRITON_INTERPRET=0`` makes every tensor of these tests a CUDA tensor.
"""

from __future__ import annotations

import os

import mhc_kernels
import pytest
import torch

from mhc_bench import ops
from mhc_bench.model import GPT, ModelConfig

# (rtol, atol relative to the reference's max magnitude) per dtype; bf16 outputs round once.
TOL = {torch.float32: (1e-4, 1e-5), torch.bfloat16: (2e-2, 1e-2)}
NS = (1, 2, 4, 8)
DTYPES = (torch.float32, torch.bfloat16)
DEVICE = os.environ.get("MHC_KERNELS_TEST_DEVICE", "cpu")


@pytest.fixture(autouse=True)
def _on_test_device():
    """Create every tensor of a test on ``DEVICE`` (CPU under the interpreter, CUDA in gpu-check)."""
    with torch.device(DEVICE):
        yield


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    rtol, atol = TOL[dtype]
    assert actual.shape == expected.shape, what
    assert actual.dtype == expected.dtype, what
    scale = expected.detach().float().abs().max().item() + 1e-12
    torch.testing.assert_close(actual.float(), expected.float(), rtol=rtol, atol=atol * scale, msg=what)


def check_fn(kernel, reference, inputs: list[torch.Tensor], dtype: torch.dtype, **kw) -> None:
    """Same outputs and same gradients w.r.t. every input for one random output cotangent."""
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    refs = [t.detach().clone().requires_grad_(True) for t in inputs]
    out = kernel(*leaves, **kw)
    ref = reference(*refs, **kw)
    out, ref = (out,) if torch.is_tensor(out) else out, (ref,) if torch.is_tensor(ref) else ref
    cot = [torch.randn_like(r) for r in ref]
    for i, (o, r) in enumerate(zip(out, ref, strict=True)):
        assert_close(o, r, dtype, f"output {i}")
    grads = torch.autograd.grad(out, leaves, cot)
    ref_grads = torch.autograd.grad(ref, refs, cot)
    for i, (g, r) in enumerate(zip(grads, ref_grads, strict=True)):
        assert_close(g, r, dtype, f"grad of input {i}")


def maps_inputs(lead: tuple[int, ...], n: int, C: int,  # noqa: N803
                 dtype: torch.dtype, scale: float = 1.0):
    width = 2 * n + n * n
    x = torch.randn(*lead, n * C).to(dtype)
    phi = torch.randn(n * C, width) / (n * C) ** 0.5
    alpha = torch.tensor([0.7, 0.4, 1.5]) * scale
    return [x, phi, alpha, torch.randn(n), torch.randn(n), torch.randn(n, n) * scale]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n", NS)
def test_mhc_maps_matches_reference(n: int, dtype: torch.dtype) -> None:
    torch.manual_seed(n)
    lead = (37,) if dtype == torch.float32 else (3, 13)  # odd token counts, extra leading dim
    check_fn(lambda *a: mhc_kernels.mhc_maps(*a, 20), lambda *a: ops.mhc_maps(*a, 20),
             maps_inputs(lead, n, 24, dtype), dtype)


def test_mhc_maps_many_tokens_multiple_programs() -> None:
    """More tokens than one program's block, C not a power of two, few iterations."""
    torch.manual_seed(7)
    check_fn(lambda *a: mhc_kernels.mhc_maps(*a, 3), lambda *a: ops.mhc_maps(*a, 3),
             maps_inputs((2, 150), 4, 20, torch.float32), torch.float32)


def test_sinkhorn_backward_is_exact_far_from_convergence() -> None:
    """Large logits: 20 iterations leave H_res far from doubly stochastic, gradients must still match."""
    torch.manual_seed(3)
    inputs = maps_inputs((29,), 4, 16, torch.float32, scale=12.0)
    _, _, h_res = ops.mhc_maps(*inputs, 20)
    col_err = (h_res.sum(-2) - 1).abs().max().item()
    assert col_err > 1e-2, f"test needs an unconverged Sinkhorn, column error {col_err}"
    leaves = [t.clone().requires_grad_(True) for t in inputs]
    refs = [t.clone().requires_grad_(True) for t in inputs]
    cot = torch.randn(29, 4, 4)
    used = (0, 1, 2, 5)  # H_res depends on x, phi, alpha, b_res
    g = torch.autograd.grad(mhc_kernels.mhc_maps(*leaves, 20)[2], [leaves[i] for i in used], cot)
    r = torch.autograd.grad(ops.mhc_maps(*refs, 20)[2], [refs[i] for i in used], cot)
    for a, b in zip(g, r, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4 * b.abs().max().item())
    # A shortcut that differentiates only the last iteration from the final output gives
    # something else: the test above would catch it.
    z = torch.log(h_res.detach())
    logits = (inputs[2][2] * (torch.nn.functional.rms_norm(inputs[0], (64,)) @ inputs[1])[:, 8:]
              ).view(29, 4, 4) + inputs[5]
    logits = logits.detach().requires_grad_(True)
    shortcut = (z + logits - logits.detach()).softmax(-1)
    g_short = torch.autograd.grad(shortcut, logits, cot)[0].sum(0)
    assert (g_short - r[3]).abs().max() > 10 * (g[3] - r[3]).abs().max()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n", NS)
def test_stream_pre_matches_reference(n: int, dtype: torch.dtype) -> None:
    torch.manual_seed(10 + n)
    lead, C = (2, 19), 40
    inputs = [torch.rand(*lead, n).to(dtype), torch.randn(*lead, n, C).to(dtype)]
    check_fn(mhc_kernels.stream_pre, ops.stream_pre, inputs, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n", NS)
def test_stream_post_res_matches_reference(n: int, dtype: torch.dtype) -> None:
    torch.manual_seed(20 + n)
    lead, C = (41,), 24
    inputs = [torch.rand(*lead, n, n).to(dtype), torch.randn(*lead, n, C).to(dtype),
              torch.rand(*lead, n).to(dtype) * 2, torch.randn(*lead, C).to(dtype)]
    check_fn(mhc_kernels.stream_post_res, ops.stream_post_res, inputs, dtype)


def test_non_contiguous_expanded_stream_input() -> None:
    """The model feeds layer 0 an expanded embedding: stride 0 on the stream axis."""
    torch.manual_seed(5)
    B, T, n, C = 2, 7, 4, 16
    h = torch.randn(B, T, 1, C)
    x = h.expand(B, T, n, C)
    for kernel, reference, args in (
        (mhc_kernels.stream_pre, ops.stream_pre, lambda xx: (torch.rand(B, T, n), xx)),
        (mhc_kernels.stream_post_res, ops.stream_post_res,
         lambda xx: (torch.rand(B, T, n, n), xx, torch.rand(B, T, n), torch.randn(B, T, C))),
    ):
        torch.manual_seed(6)
        hk = h.clone().requires_grad_(True)
        out_k = kernel(*args(hk.expand(B, T, n, C)))
        torch.manual_seed(6)
        hr = h.clone().requires_grad_(True)
        out_r = reference(*args(hr.expand(B, T, n, C)))
        torch.testing.assert_close(out_k, out_r, rtol=1e-5, atol=1e-5)
        out_k.sum().backward()
        out_r.sum().backward()
        torch.testing.assert_close(hk.grad, hr.grad, rtol=1e-5, atol=1e-5)
    maps_x = x.flatten(-2)  # non-contiguous flatten of an expanded tensor
    rest = maps_inputs((1,), n, C, torch.float32)[1:]
    for a, b in zip(mhc_kernels.mhc_maps(maps_x, *rest, 5), ops.mhc_maps(maps_x, *rest, 5), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def _train_losses(kernels: str, recompute: int, steps: int = 4) -> list[float]:
    torch.manual_seed(0)
    cfg = ModelConfig.of("mhc", vocab_size=64, n_layer=1, d_model=32, n_head=2, seq_len=16,
                      n_streams=4, kernels=kernels, recompute=recompute, alpha_init=0.5)
    model = GPT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    idx = torch.randint(0, 64, (2, 17), generator=torch.Generator(DEVICE).manual_seed(1))
    losses = []
    for _ in range(steps):  # one fixed batch: the loss must go down
        _, loss = model(idx[:, :-1], idx[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_model_trains_identically_with_triton_kernels() -> None:
    ref = _train_losses("torch", 0)
    assert ref[-1] < ref[0]
    torch.testing.assert_close(_train_losses("triton", 0), ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(_train_losses("triton", -1), ref, rtol=1e-4, atol=1e-5)
