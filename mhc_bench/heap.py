"""Keep freed tensor memory in the process instead of handing it back to the kernel.

glibc's malloc serves large blocks (a ``[tokens, n, C]`` activation, an LM
head's logits) with ``mmap`` and trims the heap's free top, so every training
step maps, page-faults and zeroes its activations afresh: 10-18 thousand
minor page faults a step, 7-9 % of a CPU step at the quick shape (measured by
``mhc-bench bench``'s step runner, in separate processes with and without this).
Raising glibc's mmap and trim thresholds lets a step reuse the pages the last
step freed, as PyTorch's CUDA caching allocator does on a GPU. It changes
where tensors live, never what is computed: results are bit for bit the same.

The cost is resident memory: a process keeps its peak heap until it exits
(and up to :data:`TRIM_THRESHOLD` bytes of it free), which is what a training
process wants. Setting ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_``
(glibc's own variables) leaves glibc's choice alone; other C libraries are
left alone too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import platform

# Blocks up to this size come from the heap, so freed ones are reused (glibc: M_MMAP_THRESHOLD).
MMAP_THRESHOLD = 1 << 30
# Free heap kept at the top before glibc returns it to the kernel (M_TRIM_THRESHOLD; an int).
TRIM_THRESHOLD = (1 << 31) - 1
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers
USER_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


@functools.cache
def keep_freed_memory() -> bool:
    """Set glibc's thresholds once per process; True when they were set.

    A no-op (False) off glibc or when the user set glibc's own variables.
    """
    if platform.libc_ver()[0] != "glibc" or any(v in os.environ for v in USER_VARIABLES):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
