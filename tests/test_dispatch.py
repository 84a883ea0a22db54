"""Kernel dispatch: one decision (``pick``) for every op; 'auto' is the fast path on CPU, 'triton' on CPU
fails helpfully, a path an op lacks falls back towards the reference."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from mhc_bench import fastops, ops
from mhc_bench.dispatch import (
    FAST_OPS,
    KERNEL_CHOICES,
    PATHS,
    TORCH_OPS,
    describe,
    pick,
    stream_ops,
    stream_ops_for,
)
from mhc_bench.model import GPT, ModelConfig


def test_choices_pick_and_auto_on_cpu_is_the_fast_path() -> None:
    assert set(KERNEL_CHOICES) == {"auto", "torch", "fast", "triton", "compile"}
    assert stream_ops_for("torch") is TORCH_OPS
    assert stream_ops_for("fast") is FAST_OPS
    assert FAST_OPS.stream_pre is fastops.stream_pre
    h, x = torch.rand(3, 2), torch.randn(3, 2, 5)
    for choice in ("auto", "compile"):  # compile: the fast ops inside the compiled model on CPU
        assert pick(choice, "cpu", PATHS) == "fast"
        assert stream_ops(choice, "cpu") is FAST_OPS
        torch.testing.assert_close(stream_ops(choice, "cpu").stream_pre(h, x), ops.stream_pre(h, x))
    assert pick("torch", "cpu", PATHS) == "torch"


def test_a_missing_path_falls_back_towards_the_reference() -> None:
    assert pick("triton", "cpu", ("torch", "fast")) == "fast"  # HC's maps have no Triton kernel
    assert pick("fast", "cpu", ("torch",)) == "torch"
    assert pick("auto", "cuda", ("torch", "fast")) == "fast"
    assert pick("compile", "cuda", ("torch", "fast", "triton")) == "torch"  # inductor makes the Triton


@pytest.mark.triton
def test_triton_under_interpreter_resolves_to_mhc_kernels() -> None:
    import mhc_kernels

    assert mhc_kernels.interpreting()
    assert stream_ops_for("triton").stream_pre is mhc_kernels.stream_pre
    assert pick("triton", "cpu", PATHS) == "triton"


def test_unknown_choice_and_path_are_rejected() -> None:
    with pytest.raises(ValueError, match="kernels must be one of"):
        pick("cuda", "cpu", PATHS)
    with pytest.raises(ValueError, match="path must be one of"):
        stream_ops_for("cuda")


def test_a_model_says_which_implementations_run() -> None:
    tiny = dict(vocab_size=16, n_layer=1, d_model=8, n_head=2, seq_len=4)
    assert GPT(ModelConfig.of("mhc", **tiny)).kernel_paths("cpu") == "maps=fast streams=fast"
    torch_path = GPT(ModelConfig.of("mhc", kernels="torch", **tiny))
    assert torch_path.kernel_paths("cpu") == "maps=torch streams=torch"
    assert GPT(ModelConfig.of("baseline", n_streams=1, **tiny)).kernel_paths("cpu") == "x + F(x)"
    assert describe("compile", "cuda", ("torch", "fast"), True).startswith("compiled whole model; maps=torch")


@pytest.mark.triton
@pytest.mark.skipif(torch.cuda.is_available(), reason="the error is for machines without CUDA")
def test_triton_on_cpu_without_interpreter_explains_the_fix() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    code = "from mhc_bench.dispatch import stream_ops_for; stream_ops_for('triton')"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "TRITON_INTERPRET=1" in proc.stderr
    assert "kernels='torch'" in proc.stderr
