"""Packaging: triton only where it has wheels, and the CPU paths that never need it; the licence."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from packaging.requirements import Requirement

from mhc_bench import dispatch
from mhc_bench.paths import PROJECT_ROOT

# Runs in a fresh interpreter in which `import triton` fails, as on a Mac: the model trains a step
# on every CPU path and nothing imports triton on the way.
_NO_TRITON = """
import importlib.abc, sys

class NoTriton(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "triton" or name.startswith("triton."):
            raise ImportError("triton is not installed here (test)")
        return None

sys.meta_path.insert(0, NoTriton())
import importlib.util
importlib.util.find_spec = lambda name, *a, _real=importlib.util.find_spec: (
    None if name.split(".")[0] == "triton" else _real(name, *a))

import torch
from mhc_bench import dispatch
from mhc_bench.model import GPT, ModelConfig

assert not dispatch.triton_usable("cuda") and not dispatch.triton_usable("cpu")
for kernels in ("auto", "fast", "torch"):
    torch.manual_seed(0)
    model = GPT(ModelConfig.of("mhc", vocab_size=50, n_layer=2, d_model=16, n_head=2, seq_len=12,
                            n_streams=2, kernels=kernels))
    idx = torch.randint(0, 50, (2, 12))
    logits, loss = model(idx, idx)
    loss.backward()
    assert torch.isfinite(loss), kernels
assert "triton" not in sys.modules, "a CPU path imported triton"
print("ok")
"""


def test_the_cpu_paths_run_without_triton() -> None:
    out = subprocess.run([sys.executable, "-c", _NO_TRITON], capture_output=True, text=True, timeout=300,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(PROJECT_ROOT)})
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


def test_auto_falls_back_to_the_fast_path_on_cuda_without_triton(monkeypatch) -> None:
    monkeypatch.setattr(dispatch, "triton_usable", lambda device_type: False)
    assert dispatch.pick("auto", "cuda", dispatch.PATHS) == "fast"
    assert dispatch.stream_ops("auto", "cuda") is dispatch.FAST_OPS


def test_triton_is_required_on_linux_only() -> None:
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    reqs = {Requirement(r).name: Requirement(r) for r in project["dependencies"]}
    triton = reqs["triton"]
    assert triton.marker is not None
    assert triton.marker.evaluate({"sys_platform": "linux"})
    assert not triton.marker.evaluate({"sys_platform": "darwin"})
    assert not triton.marker.evaluate({"sys_platform": "win32"})
    assert reqs["torch"].marker is None  # torch has wheels everywhere
    for name in ("scipy", "filelock", "jinja2", "tabulate"):
        assert name in reqs, f"{name} is used by the report and must be declared"


def test_the_licence_is_the_one_pyproject_names() -> None:
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    text = (PROJECT_ROOT / "LICENSE").read_text()
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert text.startswith("MIT License") and "mhc-bench contributors" in text
