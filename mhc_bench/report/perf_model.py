"""Optional hook for C9: the kernels' performance model's PREDICTED overhead, never a measurement.

C9 (+6.7 % training time with fused kernels) can only be judged by timing the fused Triton
kernels on a GPU. Where none was used, the report shows the roofline model of this project's
kernels (``mhc-bench kernels model``, committed as ``results/kernels/model.json``, next to the
profiles' results folders): per named GPU, the predicted mHC n = 4 overhead at the paper's
27B layer shape, labelled "predicted, not measured"; it never changes C9's verdict. Without
the file the report says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PERF_MODEL = Path("kernels") / "model.json"  # relative to the results root (results/)
LABEL = "predicted, not measured"


@dataclass(frozen=True)
class Prediction:
    gpu: str
    shape: str
    ratio: float

    def text(self) -> str:
        return f"{self.gpu} {self.shape}: {self.ratio:.3f} ({self.ratio - 1:+.1%})"


@dataclass(frozen=True)
class Band:
    """One GPU's predicted overhead at both ends of the model's band (see ``mhc_bench.gpu.cost.BAND``)."""

    gpu: str
    ends: tuple[tuple[str, float], ...]  # (end, overhead %), in the model's order

    def text(self) -> str:
        low, high = min(v for _, v in self.ends), max(v for _, v in self.ends)
        return f"{self.gpu} +{low:.1f} % to +{high:.1f} %"


@dataclass(frozen=True)
class PerfModel:
    """What the hook found: predictions (a band where the model has one), or why there are none."""

    where: str  # the file, as shown in the report
    predictions: tuple[Prediction, ...] = ()
    note: str = ""
    band: tuple[Band, ...] = ()
    band_assumptions: tuple[tuple[str, str], ...] = ()

    def summary(self) -> str:
        """One clause for C9's reason: the band and each end's assumptions (else the single points)."""
        if self.band:
            ends = "; ".join(f"{end}: {text}" for end, text in self.band_assumptions)
            return (f"{LABEL} ({self.where}), a band, not evidence: " + ", ".join(b.text() for b in self.band)
                    + f" (ends: {ends})")
        if not self.predictions:
            return self.note
        return f"{LABEL} ({self.where}): " + "; ".join(p.text() for p in self.predictions)


def perf_model_path(results_dir: Path) -> Path:
    """``results/kernels/model.json`` for the profile folder ``results/<profile>``."""
    return Path(results_dir).parent / PERF_MODEL


def _shape(assumptions: dict[str, Any]) -> str:
    keys = ("hidden", "blocks", "n", "seq_len", "stream_dtype")
    return ", ".join(f"{k}={assumptions[k]}" for k in keys if k in assumptions)


def read_perf_model(path: Path, shown_as: str | None = None) -> PerfModel:
    """The predicted overheads of ``path`` (``mhc_bench.gpu.cost``'s JSON); a missing or malformed
    file gives a note, not an error."""
    where = shown_as or str(path)
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return PerfModel(where, note=f"no performance model ({where} absent): no predicted overhead either")
    except (OSError, ValueError) as err:
        return PerfModel(where, note=f"{where} unreadable ({type(err).__name__}): no predicted overhead")
    predicted = data.get("predicted") if isinstance(data, dict) else None
    if not isinstance(predicted, dict):
        return PerfModel(where, note=f"{where} has no 'predicted' map: no predicted overhead")
    shape = _shape(data.get("assumptions") or {})
    found = []
    for gpu, row in sorted(predicted.items()):
        try:
            found.append(Prediction(str(gpu), shape, 1.0 + float(row["overhead_pct"]) / 100))
        except (KeyError, TypeError, ValueError):
            continue
    if not found:
        return PerfModel(where, note=f"{where} lists no usable predictions (gpu -> overhead_pct)")
    band = data.get("band") if isinstance(data.get("band"), dict) else {}
    bands = tuple(Band(str(gpu), tuple((str(e), float(v)) for e, v in ends.items()))
                  for gpu, ends in sorted((band.get("overhead_pct") or {}).items()))
    assumptions = tuple((str(e), str(t)) for e, t in (band.get("assumptions") or {}).items())
    return PerfModel(where, tuple(found), band=bands, band_assumptions=assumptions)
