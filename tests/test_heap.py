"""mhc_bench.heap: freed blocks are reused (no fresh page faults a step), and results do not move.

Each case runs in its own interpreter: the thresholds are process-wide and the
test session has set them already (conftest).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")

_FAULTS = """
import json, resource, torch
from mhc_bench.heap import keep_freed_memory
kept = keep_freed_memory() if {keep} else None
def cycle():  # a step's large activation: 64 MiB, above glibc's largest dynamic mmap threshold
    t = torch.empty(1 << 24); t.fill_(1.0); del t
for _ in range(10):  # the heap settles after a few cycles (memalign's leftovers)
    cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    cycle()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5
print(json.dumps({{"kept": kept, "faults": faults}}))
"""

_GRADS = """
import json, torch
from mhc_bench.heap import keep_freed_memory
if {keep}:
    assert keep_freed_memory()
from mhc_bench.model import GPT, ModelConfig
torch.manual_seed(0)
model = GPT(ModelConfig.of("mhc", vocab_size=64, n_layer=2, d_model=64, seq_len=32, kernels="fast"))
idx = torch.randint(0, 64, (16, 33))  # [16, 32, 4, 64] streams: 512 KiB blocks, mmapped by default
for _ in range(3):  # later passes run in memory the earlier ones freed
    model.zero_grad()
    _, loss = model(idx[:, :-1], idx[:, 1:])
    loss.backward()
print(json.dumps([loss.item()] + [p.grad.flatten()[:64].tolist() for p in model.parameters()]))
"""


def _run(code: str, **env: str) -> object:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_freed_blocks_are_reused_without_new_page_faults() -> None:
    default = _run(_FAULTS.format(keep=False))
    kept = _run(_FAULTS.format(keep=True))
    assert default["faults"] > 4000, default  # 64 MiB mmapped afresh: ~16k faults of 4 KiB
    assert kept["kept"] is True and kept["faults"] < 100, kept


def test_glibc_variables_set_by_the_user_win() -> None:
    found = _run(_FAULTS.format(keep=True), MALLOC_TRIM_THRESHOLD_="0")
    assert found["kept"] is False
    assert found["faults"] > 4000


def test_training_numbers_are_bit_for_bit_the_same() -> None:
    assert _run(_GRADS.format(keep=True)) == _run(_GRADS.format(keep=False))
