"""Whole-model ``torch.compile`` of the training forward (``ModelConfig.kernels = "compile"``).

Only training steps (``model.training`` with grad enabled) run compiled, so
the compiled graph has one fixed shape per run; validation, probes (which
record the maps from inside the layers) and lm-eval scoring run the same
model eagerly with the same stream ops. The compiled callable is kept on the
model (not in ``state_dict``), built at the first training step.

Compilation happens in the first step and is cached by inductor under
``TORCHINDUCTOR_CACHE_DIR`` (``mhc_bench.paths`` points it at the project's
``.cache/inductor``), so the second process that compiles the same graph (the
next seed of a cell, or a rerun) loads the kernels from the cache instead of
generating them again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

_ATTR = "_mhc_compiled_forward"


def compiled_forward(model: torch.nn.Module) -> Callable[..., Any]:
    """The model's ``forward`` compiled once by ``torch.compile`` (fixed shapes, one graph)."""
    fn = model.__dict__.get(_ATTR)
    if fn is None:
        fn = torch.compile(model.forward, dynamic=False)
        model.__dict__[_ATTR] = fn
    return fn


def use_compiled(model: torch.nn.Module) -> bool:
    """Whether this call should take the compiled path (a training step, not already tracing)."""
    return model.training and torch.is_grad_enabled() and not torch.compiler.is_compiling()
