"""The variant registry and the variants it ships: invariants against float64 references.

Every variant is reached through the registry only (``ModelConfig.of(<name>, ...)``), as the model,
the config schema, the optimizer and the report reach it.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from mhc_bench import variants
from mhc_bench.model import GPT, ModelConfig
from mhc_bench.train.module import uses_weight_decay
from mhc_bench.variants.mhc_lite import permutations

TINY = dict(vocab_size=40, n_layer=2, d_model=16, n_head=2, seq_len=8)
N_STREAM = [v for v in ("hc", "mhc", "mhc_lite", "rowstoch")]


def test_the_registry_lists_the_shipped_variants_with_one_reference() -> None:
    assert {"baseline", "hc", "mhc", "mhc_lite", "rowstoch"} <= set(variants.names())
    assert variants.reference().name == "baseline"
    for name in variants.names():
        spec = variants.get(name)
        assert spec.label and spec.summary and "torch" in spec.implementations
    with pytest.raises(ValueError, match="unknown variant 'resnet'"):
        variants.get("resnet")


def _maps(variant: str, n: int, kernels: str = "torch", **knobs) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig.of(variant, n_streams=n, kernels=kernels, **TINY, **knobs)
    module = cfg.spec.build_maps(cfg, layer_index=1).double()
    with torch.no_grad():  # leave the near-identity start so that the dynamic part matters
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    return module


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_mhc_lite_is_exactly_doubly_stochastic(n: int) -> None:
    module = _maps("mhc_lite", n)
    x = torch.randn(3, 7, n, TINY["d_model"], dtype=torch.float64) * 3
    _, _, h_res = module(x)
    ones = torch.ones(3, 7, n, dtype=torch.float64)
    torch.testing.assert_close(h_res.sum(-1), ones, atol=1e-12, rtol=0)
    torch.testing.assert_close(h_res.sum(-2), ones, atol=1e-12, rtol=0)
    assert bool((h_res >= 0).all())


def test_mhc_lite_uses_every_permutation_up_to_the_limit_then_a_fixed_sample() -> None:
    assert len(permutations(4, 24)) == 24 == math.factorial(4)
    assert sorted(permutations(3, 24)) == sorted(itertools.permutations(range(3)))
    sample = permutations(6, 24)
    assert len(sample) == 24 == len(set(sample)) and sample[0] == tuple(range(6))
    assert sample == permutations(6, 24)  # the same sample every time


def test_mhc_lite_starts_near_the_identity() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig.of("mhc_lite", n_streams=4, **TINY)
    module = cfg.spec.build_maps(cfg, layer_index=2)
    h_pre, h_post, h_res = module(torch.zeros(1, 1, 4, TINY["d_model"]) + 1e-3)
    assert h_res[0, 0].diagonal().min() > 0.99  # identity logit 0, the others -8
    assert h_pre[0, 0].argmax().item() == 2 and h_post[0, 0].argmax().item() == 2  # one-hot at l mod n


def test_rowstoch_rows_sum_to_one_and_columns_are_free() -> None:
    module = _maps("rowstoch", 4)
    x = torch.randn(4, 5, 4, TINY["d_model"], dtype=torch.float64) * 3
    _, _, h_res = module(x)
    torch.testing.assert_close(h_res.sum(-1), torch.ones(4, 5, 4, dtype=torch.float64), atol=1e-12, rtol=0)
    assert (h_res.sum(-2) - 1).abs().max() > 1e-3  # nothing constrains the columns


@pytest.mark.parametrize("variant", ["mhc_lite", "rowstoch"])
def test_fast_maps_match_the_reference_in_float64(variant: str) -> None:
    ref, fast = _maps(variant, 4, "torch"), _maps(variant, 4, "fast")
    x = torch.randn(2, 6, 4, TINY["d_model"], dtype=torch.float64, requires_grad=True)
    out_ref, out_fast = ref(x), fast(x)
    for a, b in zip(out_ref, out_fast, strict=True):
        torch.testing.assert_close(b, a, atol=1e-12, rtol=1e-12)
    weights = [torch.randn_like(o) for o in out_ref]
    g_ref = torch.autograd.grad(out_ref, [x, *ref.parameters()], weights)
    g_fast = torch.autograd.grad(out_fast, [x, *fast.parameters()], weights)
    for a, b in zip(g_ref, g_fast, strict=True):
        torch.testing.assert_close(b, a, atol=1e-10, rtol=1e-9)


@pytest.mark.parametrize("variant", ["mhc_lite", "rowstoch"])
def test_maps_gradients_pass_gradcheck(variant: str) -> None:
    module = _maps(variant, 3)
    x = torch.randn(2, 3, 3, TINY["d_model"], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: module(t), (x,))


@pytest.mark.parametrize("variant", N_STREAM)
def test_one_stream_with_fixed_maps_is_the_baseline(variant: str) -> None:
    torch.manual_seed(0)
    base = GPT(ModelConfig.of("baseline", n_streams=1, **TINY))
    other = GPT(ModelConfig.of(variant, n_streams=1, maps=[], **TINY))
    missing, unexpected = other.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all(".maps." in k for k in missing)
    idx = torch.randint(0, TINY["vocab_size"], (2, TINY["seq_len"]))
    assert torch.equal(other(idx)[0], base(idx)[0])


@pytest.mark.parametrize("variant", N_STREAM)
def test_every_variant_trains_and_its_static_maps_are_not_decayed(variant: str) -> None:
    torch.manual_seed(0)
    model = GPT(ModelConfig.of(variant, n_streams=3, **TINY))
    spec = model.cfg.spec
    idx = torch.randint(0, TINY["vocab_size"], (2, TINY["seq_len"] + 1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(3):
        _, loss = model(idx[:, :-1], idx[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in spec.no_decay:
            assert not uses_weight_decay(name, p, spec, True), name
        if leaf in spec.projections:
            assert uses_weight_decay(name, p, spec, True) and not uses_weight_decay(name, p, spec, False)


def test_flop_models_come_from_the_variants() -> None:
    from mhc_bench.bench import floor

    assert floor.extra_flops("mhc", 4, 512) == 6 * 2048 * 24 + 6 * 512 * 24
    assert floor.extra_flops("rowstoch", 4, 512) == floor.extra_flops("mhc", 4, 512)
    assert floor.extra_flops("mhc_lite", 4, 512) == 6 * 2048 * 32 + 6 * 24 * 16 + 6 * 512 * 24
    assert floor.extra_flops("baseline", 1, 512) == 0 and floor.extra_flops("mhc_lite", 1, 512) == 0
    ablated = variants.parse_mixing({"kind": "mhc", "maps": ["res"]})
    assert floor.extra_flops("mhc", 4, 512, ablated) == 6 * 2048 * 16 + 6 * 512 * 24


def test_knobs_are_validated_by_their_variant() -> None:
    assert variants.parse_mixing({"kind": "mhc", "sinkhorn_iters": 5}).sinkhorn_iters == 5
    with pytest.raises(ValueError, match=r"mixing\.sinkhorn_iters"):
        variants.parse_mixing({"kind": "mhc", "sinkhorn_iters": 0})
    with pytest.raises(ValueError, match="max_permutations"):
        variants.parse_mixing({"kind": "mhc_lite", "max_permutations": 0})
    with pytest.raises(ValueError, match=r"mixing\.sinkhorn_iters"):  # not a knob of HC
        variants.parse_mixing({"kind": "hc", "sinkhorn_iters": 5})
    with pytest.raises(ValueError, match=r"mixing\.maps"):
        variants.parse_mixing({"kind": "rowstoch", "maps": ["res", "res"]})
