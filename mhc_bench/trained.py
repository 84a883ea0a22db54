"""The one loader of a trained cell: its weights into the model its config describes.

It sits above the cell folder contract (:mod:`mhc_bench.cellfolder`, which imports neither torch
nor the model) and below its users (evaluation, re-probing, ``--keep-weights``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mhc_bench import cellfolder as cf


def load_trained_model(cell_dir: Path, map_location: str = "cpu") -> tuple[Any, Any]:
    """The one loader of a trained cell: ``(GPT in eval mode, resolved CellConfig)``.

    ``kernels`` is switched to ``auto``: scoring and probing need the same maths, not the
    training path (Triton or compiled).
    """
    import torch

    from mhc_bench.model import GPT

    cell_dir = Path(cell_dir)
    metrics = cf.require_finished(cell_dir)
    cfg = cf.read_config(cell_dir)
    model_cfg = cfg.model.to_model_config()
    model_cfg.kernels = "auto"
    model = GPT(model_cfg)
    path = cf.weights_file(cell_dir)
    assert path is not None  # require_finished checked it
    problem = cf.weights_problem(cell_dir, metrics)
    if problem is not None:
        raise cf.CellFileError(f"{problem}; regenerate it (`mhc-bench cell {cell_dir.name} --keep-weights`)")
    try:
        if path.name == cf.MODEL:
            from safetensors.torch import load_file

            state = load_file(path, device=map_location)
        else:
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise cf.CellFileError(f"{path} cannot be loaded ({type(err).__name__}); regenerate it "
                            f"(`mhc-bench cell {cell_dir.name} --keep-weights`)") from None
    model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in state.items()})
    return model.eval(), cfg
