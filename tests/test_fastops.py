"""The CPU fast path (``mhc_bench.fastops``, C kernels and torch fallback) against ``mhc_bench.ops``.

Values and gradients on random inputs in float64 (to 1e-10, far inside the
1e-6 the fast path promises), ``gradcheck`` of each custom backward, the
precision policy (fp32 maps, fp32 accumulation, the stream's dtype out) with
bf16 streams and under CPU autocast, and awkward layouts (broadcast streams,
non-contiguous inputs).
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from mhc_bench import cpukernels, fastops, ops
from mhc_bench.model import ModelConfig
from mhc_bench.variants.hc import HCMaps

F64 = torch.float64


@pytest.fixture(autouse=True, params=["c", "torch"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs on the C kernels and on the torch-op fallback (no compiler / disabled)."""
    monkeypatch.setenv("MHC_BENCH_CPU_KERNELS", "1" if request.param == "c" else "0")
    if request.param == "c":
        assert cpukernels.kernels_for(torch.zeros(1)) is not None, "the C kernels did not build"
    return request.param


def rand(*shape: int, scale: float = 1.0, dtype: torch.dtype = F64) -> torch.Tensor:
    return (torch.randn(*shape, dtype=dtype) * scale).requires_grad_(True)


def assert_same_values_and_grads(ref_fn, fast_fn, inputs: tuple[torch.Tensor, ...],
                                 atol: float = 1e-10) -> None:
    """Same outputs, and the same gradients of a random linear function of them."""
    ref = ref_fn(*inputs)
    fast = fast_fn(*inputs)
    ref, fast = (ref,) if torch.is_tensor(ref) else ref, (fast,) if torch.is_tensor(fast) else fast
    for r, f in zip(ref, fast, strict=True):
        assert r.dtype == f.dtype and r.shape == f.shape and r.requires_grad == f.requires_grad
        torch.testing.assert_close(f, r, atol=atol, rtol=0)
    pairs = [(r, f, torch.randn_like(r)) for r, f in zip(ref, fast, strict=True) if r.requires_grad]
    if not pairs:  # every map static (an ablation row with nothing learned)
        return
    leaves = [t for t in inputs if t.requires_grad]
    g_ref = torch.autograd.grad([p[0] for p in pairs], leaves, [p[2] for p in pairs], allow_unused=True)
    g_fast = torch.autograd.grad([p[1] for p in pairs], leaves, [p[2] for p in pairs], allow_unused=True)
    for gr, gf in zip(g_ref, g_fast, strict=True):
        assert (gr is None) == (gf is None)
        if gr is not None:
            torch.testing.assert_close(gf, gr, atol=atol, rtol=0)


@pytest.mark.parametrize(("n", "iters"), [(1, 20), (2, 1), (4, 20), (8, 7)])
def test_sinkhorn_matches_reference(n: int, iters: int) -> None:
    torch.manual_seed(n)
    z = rand(3, 5, n, n, scale=2.0)
    assert_same_values_and_grads(lambda t: ops.sinkhorn_knopp(t, iters),
                                 lambda t: fastops.sinkhorn_knopp(t, iters), (z,))


def test_sinkhorn_gradcheck() -> None:
    torch.manual_seed(0)
    z = rand(4, 3, 3)
    assert torch.autograd.gradcheck(lambda t: fastops.sinkhorn_knopp(t, 6), (z,))


def test_sinkhorn_survives_logits_the_exp_domain_cannot_hold() -> None:
    """Logits ~200 apart underflow in the exp domain: the fallback to the reference keeps it exact."""
    z = torch.zeros(3, 4, 4)
    z[0, 1] = -200.0
    z[2] = torch.randn(4, 4) + 150.0  # far above the other tokens: they underflow after the shift
    h = fastops.sinkhorn_knopp(z, 20)
    assert torch.isfinite(h).all()
    torch.testing.assert_close(h, ops.sinkhorn_knopp(z, 20))


@pytest.mark.parametrize("row_offset", [0.0, 9.0, 40.0])
def test_sinkhorn_gradients_stay_exact_where_the_exp_domain_is_risky(row_offset: float) -> None:
    """Trained without clipping at a high lr, mHC's logits span hundreds within a token (405 in a
    d64 frontier cell at lr 0.1). A row whose entries sit 80-120 below their columns' maxima
    underflows to one denormal in the exp domain and is rescaled by 1 / 1e-35: the forward stays
    finite, the backward was NaN (that cell "diverged" on the fast path only). Forward and backward
    must stay the log-domain reference's."""
    torch.manual_seed(0)
    z = torch.randn(32, 4, 4)
    z[:, 1, :] = torch.tensor([-80.0, -120.0, -120.0, -120.0]) + row_offset
    z[:, 2, 1] -= 60.0
    z.requires_grad_(True)
    g = torch.randn(32, 4, 4)
    (g_ref,) = torch.autograd.grad(ops.sinkhorn_knopp(z, 20), z, g)
    fast = fastops.sinkhorn_knopp(z, 20)
    (g_fast,) = torch.autograd.grad(fast, z, g)
    assert torch.isfinite(g_fast).all()
    torch.testing.assert_close(fast, ops.sinkhorn_knopp(z, 20), atol=1e-6, rtol=0)
    torch.testing.assert_close(g_fast, g_ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("n", [2, 3, 4, 8])
def test_sinkhorn_log_domain_kernel_matches_the_reference(n: int) -> None:
    """Logits spanning ~300 per token take the log-domain C kernel (no exp domain): values and
    gradients are the reference's in float64, and gradcheck passes."""
    torch.manual_seed(n)
    z = rand(2, 7, n, n, scale=60.0)
    span = (z.amax(dim=(-2, -1)) - z.amin(dim=(-2, -1))).detach()
    assert float(span.min()) > cpukernels.ops.EXP_DOMAIN_MAX_RANGE
    assert_same_values_and_grads(lambda t: ops.sinkhorn_knopp(t, 20),
                                 lambda t: fastops.sinkhorn_knopp(t, 20), (z,))
    assert torch.autograd.gradcheck(lambda t: fastops.sinkhorn_knopp(t, 5), (rand(3, n, n, scale=40.0),))


def test_sinkhorn_bf16_accumulates_in_fp32() -> None:
    torch.manual_seed(1)
    z = torch.randn(64, 4, 4).to(torch.bfloat16)
    h = fastops.sinkhorn_knopp(z, 20)
    assert h.dtype == torch.bfloat16
    # fp32 iterates, one rounding at the end: within one bf16 step of the fp32 result
    torch.testing.assert_close(h.float(), fastops.sinkhorn_knopp(z.float(), 20), atol=0, rtol=2**-8)
    torch.testing.assert_close(h.float(), ops.sinkhorn_knopp(z, 20).float(), atol=0, rtol=2**-7)


@pytest.mark.parametrize("eps", [1e-6, None])
def test_rms_norm_matmul_matches_rms_norm_then_matmul(eps: float | None) -> None:
    torch.manual_seed(2)
    x, w = rand(2, 3, 4, 16), rand(16, 6, scale=0.3)
    assert_same_values_and_grads(lambda a, b: F.rms_norm(a, (16,), eps=eps) @ b,
                                 lambda a, b: fastops.rms_norm_matmul(a, b, eps), (x, w))
    assert torch.autograd.gradcheck(lambda a, b: fastops.rms_norm_matmul(a, b, eps), (x, w))


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_thin_projection_kernels_match_torch_at_every_remainder(dtype: torch.dtype, backend: str) -> None:
    """RMSNorm(x) @ W and x^T g of the C tiles against float64 torch: rows not a multiple of the
    4-row tile, K not a multiple of a vector, J from 1 to 35 columns (one to several column
    groups); on the C tiles one thread and two give the same bits (each thread owns whole rows or
    columns; BLAS, the fallback, promises no such thing)."""
    from mhc_bench.cpukernels import ops as kernel_ops

    torch.manual_seed(3)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    threads_before = torch.get_num_threads()
    for rows, k, j in itertools.product((1, 4, 7, 130), (1, 5, 8, 37, 260), (1, 6, 13, 24, 35)):
        x, w, g = (torch.randn(*shape, dtype=dtype) for shape in ((rows, k), (k, j), (rows, j)))
        outs = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outs.append((*kernel_ops.norm_matmul(x, w, 1e-6), kernel_ops.norm_matmul_dw(x, g)))
        torch.set_num_threads(threads_before)
        for one, two in zip(*outs, strict=True):
            assert torch.equal(one, two) or backend == "torch"
        proj, rstd, dw = outs[0]
        x64, w64, g64 = x.double(), w.double(), g.double()
        rstd_ref = (x64.square().mean(-1, keepdim=True) + 1e-6).rsqrt()
        scale = (x64.abs() @ w64.abs() * rstd_ref).max()
        assert float((proj - x64 @ w64 * rstd_ref).abs().max()) <= tol * float(scale)
        torch.testing.assert_close(rstd.double(), rstd_ref, rtol=tol, atol=0)
        assert float((dw - x64.t() @ g64).abs().max()) <= tol * float((x64.abs().t() @ g64.abs()).max())


def _mhc_inputs(n: int, c: int, lead: tuple[int, ...] = (2, 3)) -> tuple[torch.Tensor, ...]:
    width = 2 * n + n * n
    return (rand(*lead, n * c), rand(n * c, width, scale=0.5), rand(3), rand(n), rand(n), rand(n, n))


@pytest.mark.parametrize("n", [1, 2, 4])
def test_mhc_maps_match_reference(n: int) -> None:
    torch.manual_seed(3)
    assert_same_values_and_grads(lambda *a: ops.mhc_maps(*a, iters=20),
                                 lambda *a: fastops.mhc_maps(*a, iters=20), _mhc_inputs(n, 8))


def test_mhc_maps_gradcheck() -> None:
    torch.manual_seed(4)
    assert torch.autograd.gradcheck(lambda *a: fastops.mhc_maps(*a, iters=4), _mhc_inputs(2, 4, (3,)))


@pytest.mark.parametrize("enabled", [m for k in range(3) for m in itertools.combinations(ops.MAP_NAMES, k)])
def test_mhc_maps_partial_match_reference(enabled: tuple[str, ...]) -> None:
    """Table 1's ablation rows: any subset of learned maps."""
    torch.manual_seed(5)
    n, c = 3, 4
    width = sum({"pre": n, "post": n, "res": n * n}[m] for m in enabled)
    x, phi = rand(5, n * c), rand(n * c, max(width, 1), scale=0.5)
    alpha = {m: rand(()) for m in enabled}
    biases = {"pre": rand(n), "post": rand(n), "res": rand(n, n)}
    args = [biases[m] if m in enabled else None for m in ("pre", "post", "res")]

    def call(fn):
        return lambda x, phi: fn(x, phi, alpha, *args, n, 20)

    assert_same_values_and_grads(call(ops.mhc_maps_partial), call(fastops.mhc_maps_partial), (x, phi))


@pytest.mark.parametrize("maps", [("res", "pre", "post"), ("res",), ("pre", "post"), ()])
def test_hc_maps_match_the_modules_reference(maps: tuple[str, ...]) -> None:
    torch.manual_seed(6)
    cfg = ModelConfig.of("hc", vocab_size=8, d_model=8, n_head=2, n_streams=4, maps=maps)
    module = HCMaps(cfg, layer_index=1).double()  # no stream ops: the module's own math
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    x = rand(2, 3, 4, 8)

    def fast(t: torch.Tensor):
        return fastops.hc_maps(t, module.w, module.scale, module.s_pre, module.s_post, module.s_res)

    assert_same_values_and_grads(module, fast, (x,))
    params = [p for p in module.parameters() if p.numel()]  # no maps: an empty w only
    if not params:
        return
    ref_grads = torch.autograd.grad(sum((h * h).sum() for h in module(x)), params)
    fast_grads = torch.autograd.grad(sum((h * h).sum() for h in fast(x)), params)
    for gr, gf in zip(ref_grads, fast_grads, strict=True):
        torch.testing.assert_close(gf, gr, atol=1e-10, rtol=0)


def _stream_inputs(n: int, c: int, dtype: torch.dtype = F64) -> tuple[torch.Tensor, ...]:
    return rand(2, 3, n, n, dtype=dtype), rand(2, 3, n, c, dtype=dtype), rand(2, 3, n, dtype=dtype), \
        rand(2, 3, c, dtype=dtype)


@pytest.mark.parametrize("n", [1, 4])
def test_stream_ops_match_reference(n: int) -> None:
    torch.manual_seed(7)
    h_res, x, h_post, y = _stream_inputs(n, 16)
    assert_same_values_and_grads(ops.stream_pre, fastops.stream_pre, (h_post, x))
    assert_same_values_and_grads(ops.stream_post_res, fastops.stream_post_res, (h_res, x, h_post, y))
    assert torch.autograd.gradcheck(fastops.stream_pre, (h_post, x))
    assert torch.autograd.gradcheck(fastops.stream_post_res, (h_res, x, h_post, y))


def test_stream_ops_on_broadcast_and_strided_streams() -> None:
    """The first layer's streams are an expanded (stride-0) copy of the embedding."""
    torch.manual_seed(8)
    emb = rand(2, 3, 16)
    h_res, _, h_post, y = _stream_inputs(4, 16)

    def streams(e: torch.Tensor) -> torch.Tensor:
        return e.unsqueeze(-2).expand(2, 3, 4, 16)

    assert_same_values_and_grads(lambda e, h: ops.stream_pre(h, streams(e)),
                                 lambda e, h: fastops.stream_pre(h, streams(e)), (emb, h_post))
    assert_same_values_and_grads(lambda e, *a: ops.stream_post_res(a[0], streams(e), *a[1:]),
                                 lambda e, *a: fastops.stream_post_res(a[0], streams(e), *a[1:]),
                                 (emb, h_res, h_post, y))
    x_t = rand(2, 16, 4, 3).permute(0, 3, 2, 1)  # [2, 3, 4, 16], non-contiguous
    assert_same_values_and_grads(ops.stream_post_res, fastops.stream_post_res, (h_res, x_t, h_post, y))


@pytest.mark.parametrize("x_dtype", [torch.float32, torch.bfloat16])
def test_precision_policy_under_bf16_autocast(x_dtype: torch.dtype) -> None:
    """Maps fp32; stream ops accumulate in fp32 with autocast off and return the stream's dtype."""
    torch.manual_seed(9)
    n, c = 4, 32
    maps_in = tuple(t.detach().float().requires_grad_(True) for t in _mhc_inputs(n, c))
    h_res, x, h_post, y = (t.detach().float() for t in _stream_inputs(n, c))
    x = x.to(x_dtype).requires_grad_(True)
    y = y.to(torch.bfloat16).requires_grad_(True)  # F's output is bf16 under autocast
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref_maps = ops.mhc_maps(*maps_in, iters=20)
        fast_maps = fastops.mhc_maps(*maps_in, iters=20)
        ref_pre, fast_pre = ops.stream_pre(h_post, x), fastops.stream_pre(h_post, x)
        ref_out = ops.stream_post_res(h_res, x, h_post, y)
        fast_out = fastops.stream_post_res(h_res, x, h_post, y)
    for r, f in zip(ref_maps, fast_maps, strict=True):
        assert f.dtype == r.dtype == torch.float32
        torch.testing.assert_close(f, r, atol=1e-5, rtol=1e-5)
    for r, f in ((ref_pre, fast_pre), (ref_out, fast_out)):
        assert f.dtype == r.dtype == x_dtype
        torch.testing.assert_close(f.float(), r.float(), atol=1e-5, rtol=1e-5, equal_nan=False)
    g = torch.randn_like(ref_out)
    (gx_ref, gy_ref) = torch.autograd.grad(ref_out, (x, y), g)
    (gx_fast, gy_fast) = torch.autograd.grad(fast_out, (x, y), g)
    assert gx_fast.dtype == x_dtype and gy_fast.dtype == torch.bfloat16
    torch.testing.assert_close(gx_fast.float(), gx_ref.float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gy_fast.float(), gy_ref.float(), atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("residual", ["mhc", "hc"])
def test_stream_gradients_folded_into_the_maps_backward(residual: str) -> None:
    """maps -> H_pre x -> H_res x + H_post^T y on one stream tensor: the linked path, same gradients."""
    torch.manual_seed(10)
    n, c = 4, 8
    x = rand(2, 3, n, c)
    y_w = rand(c, c, scale=0.3)  # a stand-in for the branch F
    if residual == "mhc":
        params = _mhc_inputs(n, c)[1:]

        def maps(lib, t):
            return lib.mhc_maps(t.flatten(-2), *params, iters=20)
    else:
        params = (rand(c, 2 + n, scale=0.3), {"pre": rand(()), "post": rand(()), "res": rand(())},
                  rand(n), rand(n), rand(n, n))

        def maps(lib, t):
            if lib is ops:
                module = HCMaps(ModelConfig.of("hc", vocab_size=8, d_model=c, n_head=2, n_streams=n), 0)
                module = module.double()
                with torch.no_grad():
                    module.w.copy_(params[0])
                    for name in ("pre", "post", "res"):
                        module.scale[name].copy_(params[1][name])
                    module.s_pre.copy_(params[2])
                    module.s_post.copy_(params[3])
                    module.s_res.copy_(params[4])
                return module._maps(t)
            return fastops.hc_maps(t, *params)

    def layer(lib, t):
        h_pre, h_post, h_res = maps(lib, t)
        x_in = lib.stream_pre(h_pre, t)
        return lib.stream_post_res(h_res, t, h_post, torch.tanh(x_in @ y_w)), x_in

    out_ref, _ = layer(ops, x)
    out_fast, x_in = layer(fastops, x)
    assert "LinkedPre" in x_in.grad_fn.next_functions[0][0].name()  # through the output view
    assert "LinkedPostRes" in out_fast.grad_fn.next_functions[0][0].name()
    g = torch.randn_like(out_ref)
    # (HC's reference copies the map parameters into its module: compare x and F's gradients there)
    leaves = [x, y_w, *(params if residual == "mhc" else ())]
    for a, b in zip(torch.autograd.grad(out_ref, leaves, g), torch.autograd.grad(out_fast, leaves, g),
                    strict=True):
        torch.testing.assert_close(b, a, atol=1e-10, rtol=0)


@pytest.mark.parametrize(("residual", "maps"), [
    ("mhc", ("res", "pre", "post")), ("mhc", ("res",)), ("mhc", ("post",)), ("mhc", ("pre",)),
    ("hc", ("res", "pre", "post")), ("hc", ("res", "post")),
])
def test_linked_gradients_are_autograds_sums_bit_for_bit(
        residual: str, maps: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    """Handing post_res's dx to the maps' backward (fp32, what training runs) gives every gradient
    the bits of autograd's sum of the same shares: linking it changed no trained number."""
    torch.manual_seed(11)
    n, c, lead = 4, 37, (3, 29)  # C off the SIMD width, several tokens per thread
    f32 = torch.float32
    x = rand(*lead, n, c, dtype=f32)
    y_w = rand(c, c, scale=0.3, dtype=f32)
    on = {m: m in maps for m in ("pre", "post", "res")}
    if residual == "mhc":
        width = sum({"pre": n, "post": n, "res": n * n}[m] for m in maps)
        phi, alpha = rand(n * c, width, scale=0.5, dtype=f32), {m: rand((), dtype=f32) for m in maps}
        biases = [rand(*shape, dtype=f32) if on[m] else None
                  for m, shape in (("pre", (n,)), ("post", (n,)), ("res", (n, n)))]
        params = [phi, *alpha.values(), *(b for b in biases if b is not None)]

        def maps_of(t):
            return fastops.mhc_maps_partial(t.flatten(-2), phi, alpha, *biases, n, 20)
    else:
        w = rand(c, on["pre"] + on["post"] + n * on["res"], scale=0.3, dtype=f32)
        scale = {m: rand((), dtype=f32) for m in maps}
        statics = [rand(*shape, dtype=f32) if on[m] else None
                   for m, shape in (("pre", (n,)), ("post", (n,)), ("res", (n, n)))]
        params = [w, *scale.values(), *(s for s in statics if s is not None)]

        def maps_of(t):
            return fastops.hc_maps(t, w, scale, *statics)

    def grads() -> tuple[str, list[torch.Tensor]]:
        h_pre, h_post, h_res = maps_of(x)
        out = fastops.stream_post_res(h_res, x, h_post, torch.tanh(fastops.stream_pre(h_pre, x) @ y_w))
        leaves = [x, y_w, *params]
        node = out.grad_fn.next_functions[0][0].name()  # through the output view
        g = torch.ones_like(out).mul_(0.01).add_(out.detach())
        return node, list(torch.autograd.grad(out, leaves, g))

    node, linked = grads()
    # post_res links where H_pre x does (a learned H_pre) and one of its own maps is learned
    expect_link = on["pre"] and (on["res"] or on["post"])
    assert ("LinkedPostRes" in node) == expect_link, node
    unlinked_post_res = SimpleNamespace(apply=lambda *args: cpukernels.ops.stream_post_res(*args[:-1]))
    monkeypatch.setattr(fastops, "LinkedPostRes", unlinked_post_res)
    _, unlinked = grads()
    for a, b in zip(linked, unlinked, strict=True):
        assert torch.equal(a, b)
