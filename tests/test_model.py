"""The three residual variants: reductions to the baseline, maps really applied, config checks."""

from __future__ import annotations

import pytest
import torch

from mhc_bench.model import GPT, ModelConfig
from mhc_bench.probes import amax_gain, residual_maps

TINY = dict(vocab_size=50, n_layer=2, d_model=16, n_head=2, seq_len=12)


def make(residual: str, n: int, **kw) -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig.of(residual, **TINY, n_streams=n, **kw))


def tokens(batch: int = 2) -> torch.Tensor:
    gen = torch.Generator().manual_seed(7)
    return torch.randint(0, TINY["vocab_size"], (batch, TINY["seq_len"]), generator=gen)


def test_mhc_n1_h_res_is_exactly_one() -> None:
    maps = residual_maps(make("mhc", 1), tokens())
    assert maps.shape == (4, 2, 12, 1, 1)
    assert torch.equal(maps, torch.ones_like(maps))


@pytest.mark.parametrize("residual", ["hc", "mhc"])
def test_n1_with_only_res_map_reduces_exactly_to_baseline(residual: str) -> None:
    base = make("baseline", 1)
    model = make(residual, 1, maps=("res",))
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all(".maps." in k for k in missing)
    idx = tokens()
    assert torch.equal(model(idx)[0], base(idx)[0])


def _perturbations(model: GPT) -> dict[str, torch.nn.Parameter]:
    # a middle layer: at layer 0 the streams are still copies, and at the last layer only
    # H_res's column sums reach the output (the streams are summed), both ~1 for mHC
    layer_maps = model.layers[len(model.layers) // 2].maps
    if model.cfg.variant == "mhc":
        return {"pre": layer_maps.b_pre, "post": layer_maps.b_post, "res": layer_maps.b_res,
                "phi": layer_maps.phi}
    return {"pre": layer_maps.s_pre, "post": layer_maps.s_post, "res": layer_maps.s_res, "w": layer_maps.w}


@pytest.mark.parametrize("residual", ["hc", "mhc"])
def test_every_map_changes_the_output_when_n_gt_1(residual: str) -> None:
    """Fails if H_res, H_pre or H_post were silently ignored (a bug seen in public code)."""
    model = make(residual, 4)
    with torch.no_grad():  # make the streams differ (at init they are copies, and any
        for p in model.map_parameters():  # row-stochastic mix of equal streams is a no-op)
            p.add_(torch.randn_like(p) * 0.3)
    idx = tokens()
    reference = model(idx)[0]
    for name, param in _perturbations(model).items():
        saved = param.detach().clone()
        with torch.no_grad():
            param.add_(torch.randn_like(param) * 0.5)
            changed = model(idx)[0]
            param.copy_(saved)
        assert not torch.allclose(changed, reference, atol=1e-6), f"{residual}: map {name} has no effect"
    assert torch.equal(model(idx)[0], reference)


@pytest.mark.parametrize("residual", ["hc", "mhc"])
def test_layer_computes_the_documented_update(residual: str) -> None:
    """x_next = H_res @ x + H_post^T F(H_pre @ x), with H_res rows = output streams."""
    model = make(residual, 3)
    layer = model.layers[1]
    with torch.no_grad():
        for p in layer.maps.parameters():
            p.add_(torch.randn_like(p) * 0.3)
        x = torch.randn(2, 5, 3, TINY["d_model"])
        h_pre, h_post, h_res = layer.maps(x)
        y = layer.fn(torch.einsum("btn,btnc->btc", h_pre, x))
        expected = torch.einsum("btij,btjc->btic", h_res, x) + h_post[..., None] * y[..., None, :]
        torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-6)


def _layer_outputs(model: GPT, idx: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    outputs: list[torch.Tensor] = []
    hooks = [layer.register_forward_hook(lambda _m, _i, out: outputs.append(out)) for layer in model.layers]
    maps = residual_maps(model, idx)
    for hook in hooks:
        hook.remove()
    return outputs, maps


def test_hc_starts_as_a_plain_residual_network() -> None:
    model = make("hc", 4)
    base = make("baseline", 1)
    base.load_state_dict({k: v for k, v in model.state_dict().items() if ".maps." not in k})
    idx = tokens()
    streams, maps = _layer_outputs(model, idx)
    base_streams, _ = _layer_outputs(base, idx)
    for out, base_out in zip(streams, base_streams, strict=True):
        # every stream is exactly the baseline's residual state at that layer
        assert torch.equal(out, base_out.expand_as(out))
    assert torch.equal(maps, torch.eye(4).expand_as(maps))
    gains = amax_gain(maps)
    assert gains["single_fwd"] == [1.0] * 4 and gains["single_bwd"] == [1.0] * 4
    # one-hot H_pre by layer index: layer i reads stream i mod n
    for i, layer in enumerate(model.layers):
        assert layer.maps.s_pre.argmax().item() == i % 4


def test_mhc_single_layer_forward_gain_is_one() -> None:
    model = make("mhc", 4)
    with torch.no_grad():
        for p in model.map_parameters():
            p.add_(torch.randn_like(p))
    gains = amax_gain(residual_maps(model, tokens()))
    assert all(abs(g - 1) < 1e-5 for g in gains["single_fwd"])


@pytest.mark.parametrize(
    ("maps", "expected_keys"),
    [
        ((), set()),
        (("res",), {"b_res", "alpha.res"}),
        (("res", "pre"), {"b_res", "b_pre", "alpha.res", "alpha.pre"}),
        (("res", "pre", "post"), {"b_res", "b_pre", "b_post", "alpha.res", "alpha.pre", "alpha.post"}),
    ],
)
def test_ablation_switches_select_the_learned_maps(maps: tuple[str, ...], expected_keys: set[str]) -> None:
    model = make("mhc", 4, maps=maps)
    names = {k for k, _ in model.layers[0].maps.named_parameters()} - {"phi"}
    assert names == expected_keys
    n, C = 4, TINY["d_model"]
    width = {"res": n * n, "pre": n, "post": n}
    assert model.layers[0].maps.phi.shape == (n * C, sum(width[m] for m in maps))


def test_ablation_rows_give_different_models() -> None:
    idx = tokens()
    outputs = {}
    for maps in [(), ("res",), ("res", "pre"), ("res", "pre", "post")]:
        model = make("mhc", 4, maps=maps)
        with torch.no_grad():
            for p in model.map_parameters():
                p.add_(torch.randn_like(p) * 0.5)
        outputs[maps] = (model(idx)[0], sum(p.numel() for p in model.map_parameters()))
    counts = [c for _, c in outputs.values()]
    assert counts == sorted(counts) and len(set(counts)) == 4
    logits = [o for o, _ in outputs.values()]
    # "res" alone is the baseline (no maps) exactly, up to rounding: the shared weights are the same
    # (paired initialisation) and a doubly stochastic H_res maps the copied streams to copies.
    torch.testing.assert_close(logits[1], logits[0], atol=1e-5, rtol=0)
    for a in range(1, 4):
        for b in range(a + 1, 4):
            assert not torch.allclose(logits[a], logits[b])


def test_disabled_maps_take_their_static_values() -> None:
    model = make("hc", 4, maps=())
    h_pre, h_post, h_res = model.layers[0].maps(torch.randn(1, 3, 4, TINY["d_model"]))
    assert torch.equal(h_pre, torch.full_like(h_pre, 0.25))
    assert torch.equal(h_post, torch.ones_like(h_post))
    assert torch.equal(h_res, torch.eye(4).expand_as(h_res))


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"n_streams": 0}, "n_streams"),
        ({"d_model": 30, "n_head": 4}, "d_model"),
        ({"variant": "resnet"}, "kind"),
        ({"maps": ("res", "mix")}, "maps"),
        ({"variant": "baseline", "n_streams": 2}, "n_streams"),
        ({"sinkhorn_iters": 0}, "sinkhorn_iters"),
        ({"kernels": "cuda"}, "kernels"),
        ({"init": "eye"}, "init"),
        ({"merge": "max"}, "merge"),
        ({"map_norm_eps": 0.0}, "map_norm_eps"),
        ({"n_layer": 0}, "n_layer"),
    ],
)
def test_bad_config_names_the_field(overrides: dict, field: str) -> None:
    kwargs = {**TINY, "variant": "mhc", "n_streams": 4, **overrides}
    with pytest.raises(ValueError, match=field):
        ModelConfig.of(**kwargs)


def test_recompute_matches_plain_backward() -> None:
    idx = tokens()
    grads = []
    for recompute in (0, -1):
        model = make("mhc", 4, recompute=recompute)
        model.train()
        _, loss = model(idx, idx)
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("residual", ["hc", "mhc"])
def test_res_only_ablation_keeps_copied_streams_identical_through_training(residual: str) -> None:
    """Table 1's "H_res only" row under the paper's fixed H_pre = 1/n, H_post = 1.

    The embedding is copied into the n streams; with symmetric reads and writes every
    stream gets the same gradient, so training keeps the streams exact copies (spread 0).
    mHC's row-stochastic H_res then maps the streams to themselves (the baseline); HC's
    unconstrained H_res only scales the carry by its row sum (a learned residual gate).
    """
    from mhc_bench.probes import probe_model

    model = make(residual, 4, maps=("res",))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-2)
    idx = tokens(4)
    for _ in range(5):
        opt.zero_grad()
        model(idx, idx)[1].backward()
        opt.step()
    moved = sum((p - q).abs().sum() for p, q in zip(model.map_parameters(),
                                                      make(residual, 4, maps=("res",)).map_parameters(),
                                                      strict=True))
    assert moved > 0  # the maps did train
    assert probe_model(model, idx)["max_stream_spread"] < 1e-6


def test_full_mhc_separates_the_copied_streams() -> None:
    """The control for the test above: with every map learned the streams do move apart."""
    from mhc_bench.probes import probe_model

    model = make("mhc", 4)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-2)
    idx = tokens(4)
    for _ in range(5):
        opt.zero_grad()
        model(idx, idx)[1].backward()
        opt.step()
    assert probe_model(model, idx)["max_stream_spread"] > 1e-3


def test_one_hot_and_uniform_static_pre_give_the_same_first_layer_at_init() -> None:
    """With copied streams H_pre x is a scalar times the embedding and F's pre-norm removes it."""
    from mhc_bench import map_init

    idx = tokens()
    a = make("mhc", 4, init="megatron")
    b = make("mhc", 4, init="megatron")
    with torch.no_grad():
        b.layers[0].maps.b_pre.copy_(map_init.pre_logits(map_init.PRESETS["lucidrains"], 4, 0))
    outs = []
    for model in (a, b):
        outs.append([])
        hook = model.layers[0].register_forward_hook(lambda _m, _i, out, o=outs[-1]: o.append(out))
        model(idx)
        hook.remove()
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n", [2, 4, 8])
def test_identity_logit_h_res_shrinks_stream_differences(n: int) -> None:
    """Sinkhorn of identity logits is a I + b 11^T: differences between streams shrink by
    a = (e - 1) / (e + n - 1) per layer (0.359 at n = 4, about 3x)."""
    from mhc_bench.ops import sinkhorn_knopp

    h = sinkhorn_knopp(torch.eye(n, dtype=torch.float64), 20)
    x = torch.randn(n, 5, dtype=torch.float64)
    centred = lambda t: t - t.mean(dim=0)  # noqa: E731
    ratio = centred(h @ x).norm() / centred(x).norm()
    e = torch.e
    torch.testing.assert_close(ratio.item(), (e - 1) / (e + n - 1))


@pytest.mark.parametrize("preset", ["megatron", "liger", "lucidrains", "near_identity"])
def test_init_presets_give_the_documented_initial_maps(preset: str) -> None:
    """The table in mhc_bench.map_init's docstring, checked on the static part of the maps."""
    import math

    from mhc_bench.ops import sinkhorn_knopp

    n = 4
    model = make("mhc", n, init=preset)
    maps = model.layers[1].maps
    sig = torch.sigmoid
    pre, post = sig(maps.b_pre.detach()), 2 * sig(maps.b_post.detach())
    res = sinkhorn_knopp(maps.b_res.detach().double(), 20)
    diag = {"megatron": 1 / n, "liger": 1 / n, "lucidrains": math.e / (math.e + n - 1), "near_identity": 0.99}
    torch.testing.assert_close(res.diagonal(), torch.full((n,), diag[preset], dtype=torch.float64))
    torch.testing.assert_close(res.sum(-1), torch.ones(n, dtype=torch.float64))
    if preset == "lucidrains":
        assert pre.argmax().item() == 1 and abs(pre.max().item() - sig(torch.tensor(1.0)).item()) < 1e-6
        torch.testing.assert_close(post, torch.full((n,), 2 * sig(torch.tensor(1.0)).item()))
        assert torch.count_nonzero(maps.phi) == 0
    else:
        torch.testing.assert_close(pre, torch.full((n,), 0.5))
        torch.testing.assert_close(post, torch.ones(n))
        assert torch.count_nonzero(maps.phi) == maps.phi.numel()
    alpha = 1.0 if preset == "liger" else model.cfg.mixing.alpha_init
    assert all(a.item() == pytest.approx(alpha) for a in maps.alpha.values())


@pytest.mark.parametrize("merge", ["sum", "mean", "learned"])
def test_stream_merges_start_equivalent_after_the_final_norm(merge: str) -> None:
    """mean and the learned head (equal weights at init) only rescale the sum: the same logits
    once the final norm's epsilon (1e-6, small next to the squared activations) is out of the way."""
    idx = tokens()
    base = make("mhc", 4)
    model = make("mhc", 4, merge=merge)
    model.load_state_dict(base.state_dict(), strict=False)
    base.ln_f.eps = model.ln_f.eps = 1e-30
    torch.testing.assert_close(model(idx)[0], base(idx)[0], rtol=1e-4, atol=1e-5)


def test_learned_merge_weights_the_streams() -> None:
    model = make("mhc", 4, merge="learned")
    x = torch.randn(2, 3, 4, TINY["d_model"])
    with torch.no_grad():
        model.merge.bias.copy_(torch.tensor([20.0, -20.0, -20.0, -20.0]))  # keep stream 0 only
    torch.testing.assert_close(model.merge(x), x[..., 0, :], rtol=1e-5, atol=1e-5)
