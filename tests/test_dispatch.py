"""Kernel dispatch: the choices resolve, and 'triton' on CPU fails with a useful message."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from mhc_bench import ops
from mhc_bench.dispatch import KERNEL_CHOICES, TORCH_OPS, stream_ops_for


def test_torch_and_auto_on_cpu_use_the_reference() -> None:
    assert stream_ops_for("torch") is TORCH_OPS
    h, x = torch.rand(3, 2), torch.randn(3, 2, 5)
    torch.testing.assert_close(stream_ops_for("auto").stream_pre(h, x), ops.stream_pre(h, x))
    assert set(KERNEL_CHOICES) == {"auto", "torch", "triton", "compile"}


def test_triton_under_interpreter_resolves_to_mhc_kernels() -> None:
    import mhc_kernels

    assert mhc_kernels.interpreting()
    assert stream_ops_for("triton").stream_pre is mhc_kernels.stream_pre


def test_unknown_choice_is_rejected() -> None:
    with pytest.raises(ValueError, match="kernels must be one of"):
        stream_ops_for("cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the error is for machines without CUDA")
def test_triton_on_cpu_without_interpreter_explains_the_fix() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    code = "from mhc_bench.dispatch import stream_ops_for; stream_ops_for('triton')"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "TRITON_INTERPRET=1" in proc.stderr
    assert "kernels='torch'" in proc.stderr
