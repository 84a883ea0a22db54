"""Test session set-up: tool caches into .cache/, offline hubs, Triton interpreter.

``TRITON_INTERPRET=1`` must be set before anything imports triton so that the
fused kernels run on CPU; it does not affect the torch or inductor paths.
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

from mhc_bench.heap import keep_freed_memory
from mhc_bench.paths import configure_environment

configure_environment()
keep_freed_memory()
