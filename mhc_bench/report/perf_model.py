"""Optional hook for C9: the kernels' performance model's PREDICTED overhead, never a measurement.

C9 (+6.7 % training time with fused kernels) can only be judged by timing the fused Triton
kernels on a GPU. Where none was used, the kernel work may leave a performance model at
``results/kernels/perf_model.json`` (next to the profiles' results folders) with a top-level
``predicted_overhead``: a list of rows ``{"gpu": ..., "shape": ..., "ratio": ...}`` (mHC step
time / baseline step time). The report shows those rows labelled "predicted, not measured";
they never change C9's verdict. Without the file the report says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PERF_MODEL = Path("kernels") / "perf_model.json"  # relative to the results root (results/)
LABEL = "predicted, not measured"


@dataclass(frozen=True)
class Prediction:
    gpu: str
    shape: str
    ratio: float

    def text(self) -> str:
        return f"{self.gpu} {self.shape}: {self.ratio:.3f} ({self.ratio - 1:+.1%})"


@dataclass(frozen=True)
class PerfModel:
    """What the hook found: predictions, or why there are none (``note``)."""

    where: str  # the file, as shown in the report
    predictions: tuple[Prediction, ...] = ()
    note: str = ""

    def summary(self) -> str:
        """One clause for C9's reason."""
        if not self.predictions:
            return self.note
        return f"{LABEL} ({self.where}): " + "; ".join(p.text() for p in self.predictions)


def perf_model_path(results_dir: Path) -> Path:
    """``results/kernels/perf_model.json`` for the profile folder ``results/<profile>``."""
    return Path(results_dir).parent / PERF_MODEL


def _shape(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "x".join(str(v) for v in value)
    return str(value)


def read_perf_model(path: Path, shown_as: str | None = None) -> PerfModel:
    """The predicted overhead rows of ``path``; a missing or malformed file gives a note, not an error."""
    where = shown_as or str(path)
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return PerfModel(where, note=f"no performance model ({where} absent): no predicted overhead either")
    except (OSError, ValueError) as err:
        return PerfModel(where, note=f"{where} unreadable ({type(err).__name__}): no predicted overhead")
    rows = data.get("predicted_overhead") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        return PerfModel(where, note=f"{where} has no 'predicted_overhead' list: no predicted overhead")
    found = []
    for row in rows:
        try:
            found.append(Prediction(str(row["gpu"]), _shape(row["shape"]), float(row["ratio"])))
        except (KeyError, TypeError, ValueError):
            continue
    if not found:
        return PerfModel(where, note=f"{where} lists no usable rows (gpu, shape, ratio)")
    return PerfModel(where, tuple(found))
