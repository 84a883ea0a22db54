"""The fast path and whole-model compile change no numbers: same loss, gradients and loss curves.

Model level in float64 (fast vs reference ops, every variant and ablation),
training cells (``kernels: torch`` vs the default ``auto``, which is the fast
path on CPU: the same loss curve), the compiled model against the eager one,
and a second process compiling from the first one's inductor cache.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_train import tiny

from mhc_bench.bench import compile_cache, steps
from mhc_bench.cellconfig import parse_cell_config
from mhc_bench.model import GPT, ModelConfig
from mhc_bench.train.runner import train_cell

TINY = dict(vocab_size=50, n_layer=2, d_model=16, n_head=2, seq_len=12)


def _pair(kernels: str, **kw) -> tuple[GPT, GPT]:
    torch.manual_seed(0)
    ref = GPT(ModelConfig.of(**TINY, kernels="torch", **kw)).double()
    other = GPT(ModelConfig.of(**TINY, kernels=kernels, **kw)).double()
    other.load_state_dict(ref.state_dict())
    with torch.no_grad():  # leave the identity-like initial maps, so every map matters
        for a, b in zip(ref.map_parameters(), other.map_parameters(), strict=True):
            a.add_(torch.randn_like(a) * 0.3)
            b.copy_(a)
    return ref.train(), other.train()


def _tokens(batch: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, TINY["vocab_size"], (batch, TINY["seq_len"] + 1), generator=gen)


def _loss_and_grads(model: GPT, idx: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    _, loss = model(idx[:, :-1], idx[:, 1:])
    params = [p for p in model.parameters() if p.requires_grad]
    return loss, list(torch.autograd.grad(loss, params))


@pytest.mark.parametrize(("residual", "n", "maps", "recompute"), [
    ("mhc", 4, ("res", "pre", "post"), 0), ("mhc", 4, ("res", "pre", "post"), -1), ("mhc", 3, ("res",), 0),
    ("mhc", 2, ("pre", "post"), 0), ("hc", 4, ("res", "pre", "post"), 0), ("hc", 2, ("res",), 0),
    ("mhc", 1, ("res", "pre", "post"), 0),
])
def test_fast_model_has_the_reference_loss_and_gradients(
    residual: str, n: int, maps: tuple, recompute: int
) -> None:
    ref, fast = _pair("fast", variant=residual, n_streams=n, maps=maps, recompute=recompute)
    idx = _tokens(3, seed=1)
    loss_ref, grads_ref = _loss_and_grads(ref, idx)
    loss_fast, grads_fast = _loss_and_grads(fast, idx)
    torch.testing.assert_close(loss_fast, loss_ref, atol=1e-12, rtol=0)
    for g_ref, g_fast in zip(grads_ref, grads_fast, strict=True):
        torch.testing.assert_close(g_fast, g_ref, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("residual", ["hc", "mhc"])
def test_training_cell_has_the_same_loss_curve_on_the_fast_path(residual: str, tmp_path: Path) -> None:
    """The same cell config trained on the reference ops and on the default path (fast on CPU)."""
    runs = {}
    for kernels in ("torch", "auto"):
        cfg = tiny(tmp_path, residual, 4, steps=20, probe_every=5)
        cfg["model"]["kernels"] = kernels
        cell = parse_cell_config(cfg)
        metrics = train_cell(cell, tmp_path / kernels)
        history = json.loads((tmp_path / kernels / "history.json").read_text())
        history = [h for h in history if "train_loss" in h]
        runs[kernels] = (metrics, history)
    (m_ref, h_ref), (m_fast, h_fast) = runs["torch"], runs["auto"]
    assert [h["step"] for h in h_fast] == [h["step"] for h in h_ref]
    for a, b in zip(h_ref, h_fast, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        assert b["max_composite_fwd"] == pytest.approx(a["max_composite_fwd"], rel=1e-5)
    assert m_fast["final_val_loss"] == pytest.approx(m_ref["final_val_loss"], rel=1e-5)


def test_compiled_model_trains_like_the_eager_one() -> None:
    """Three AdamW steps: same losses; evaluation never runs the compiled graph."""
    torch.manual_seed(0)
    cfg = dict(TINY, variant="mhc", n_streams=2)
    eager = GPT(ModelConfig.of(**cfg, kernels="fast"))
    compiled = GPT(ModelConfig.of(**cfg, kernels="compile"))
    compiled.load_state_dict(eager.state_dict())
    idx = _tokens(2, seed=2)
    compiled.eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(idx[:, :-1])[0], eager.eval()(idx[:, :-1])[0])
    assert "_mhc_compiled_forward" not in compiled.__dict__  # eval ran eagerly
    losses = {}
    for name, model in (("eager", eager), ("compiled", compiled)):
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        losses[name] = []
        for _ in range(3):
            _, loss = model(idx[:, :-1], idx[:, 1:])
            loss.backward()
            opt.step()
            opt.zero_grad()
            losses[name].append(loss.item())
    assert "_mhc_compiled_forward" in compiled.__dict__
    assert losses["compiled"] == pytest.approx(losses["eager"], rel=1e-5)


@pytest.mark.slow
def test_second_process_compiles_from_the_inductor_cache() -> None:
    """What lets the second training cell of a shape skip most of its compile time."""
    row = compile_cache.probe("mhc", 2, 16, steps.Shape(1, 8, 2, 64, 2), lambda _msg: None)
    assert row["cold_fx_graph_misses"] > 0 and row["cold_fx_graph_hits"] == 0
    assert row["warm_fx_graph_hits"] > 0 and row["warm_fx_graph_misses"] == 0
