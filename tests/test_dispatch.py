"""Kernel dispatch: the choices resolve, 'auto' is the fast path on CPU, 'triton' on CPU fails helpfully."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from mhc_bench import fastops, ops
from mhc_bench.dispatch import FAST_OPS, KERNEL_CHOICES, TORCH_OPS, resolve, stream_ops_for


def test_choices_resolve_and_auto_on_cpu_is_the_fast_path() -> None:
    assert set(KERNEL_CHOICES) == {"auto", "torch", "fast", "triton", "compile"}
    assert stream_ops_for("torch") is TORCH_OPS
    assert stream_ops_for("fast") is FAST_OPS
    assert FAST_OPS.stream_pre is fastops.stream_pre
    h, x = torch.rand(3, 2), torch.randn(3, 2, 5)
    for choice in ("auto", "compile"):  # compile: the fast ops inside the compiled model on CPU
        assert resolve(choice, x) is FAST_OPS
        torch.testing.assert_close(stream_ops_for(choice).stream_pre(h, x), ops.stream_pre(h, x))


@pytest.mark.triton
def test_triton_under_interpreter_resolves_to_mhc_kernels() -> None:
    import mhc_kernels

    assert mhc_kernels.interpreting()
    assert stream_ops_for("triton").stream_pre is mhc_kernels.stream_pre


def test_unknown_choice_is_rejected() -> None:
    with pytest.raises(ValueError, match="kernels must be one of"):
        stream_ops_for("cuda")


@pytest.mark.triton
@pytest.mark.skipif(torch.cuda.is_available(), reason="the error is for machines without CUDA")
def test_triton_on_cpu_without_interpreter_explains_the_fix() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    code = "from mhc_bench.dispatch import stream_ops_for; stream_ops_for('triton')"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "TRITON_INTERPRET=1" in proc.stderr
    assert "kernels='torch'" in proc.stderr
