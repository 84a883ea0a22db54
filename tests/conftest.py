"""Test session set-up: tool caches into .cache/, offline hubs, Triton interpreter.

``TRITON_INTERPRET=1`` must be set before anything imports triton so that the
fused kernels run on CPU; it does not affect the torch or inductor paths.

Triton ships Linux wheels only. Off Linux without triton, the tests of the Triton kernels and
GPU tools are not collected and the ``triton`` cases of the others skip; on Linux a missing
triton fails them (it is a dependency there).
"""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

os.environ.setdefault("TRITON_INTERPRET", "1")

from mhc_bench.heap import keep_freed_memory
from mhc_bench.paths import configure_environment

configure_environment()
keep_freed_memory()

TRITON_MISSING = importlib.util.find_spec("triton") is None and not sys.platform.startswith("linux")
# Files that import triton (or mhc_kernels' kernels) at module level.
collect_ignore = ["test_kernels.py", "test_kernels_tiling.py", "test_gpu_tools.py"] if TRITON_MISSING else []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not TRITON_MISSING:
        return
    skip = pytest.mark.skip(reason="triton is not installed (Linux only); the CPU paths do not need it")
    for item in items:
        if "triton" in item.keywords:
            item.add_marker(skip)
