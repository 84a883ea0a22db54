"""Versions of the suite's measurement definitions, importable without torch.

A result records the version it was measured under; readers (the report) compare it
with these so that numbers measured under different definitions are never mixed.
"""

from __future__ import annotations

# Stability probes (mhc_bench.probes). 2: the composite forward gain is of the suffix product
# Q_l (the paper's; 1 used the prefix P_l), prefix_fwd and stream spread added. 3: the projection's
# convergence (column error, logit span; Sinkhorn's iterations needed in the final probe).
PROBE_VERSION = 3

# What the training monitor records at every probe (history.json entries, MLflow metrics):
# scalars and per-layer lists, all measured under PROBE_VERSION.
PROBE_SCALARS = (
    "max_single_fwd", "max_single_bwd", "max_composite_fwd", "max_composite_bwd", "min_single_min_col",
    "min_composite_min_col", "max_composite_max_abs_log_col", "layer0_fwd", "layer0_bwd",
    "max_prefix_fwd", "max_stream_spread", "final_stream_spread", "max_col_err", "max_logit_span",
)
PROBE_LISTS = ("single_fwd", "single_bwd", "composite_fwd", "composite_bwd", "composite_min_col",
               "prefix_fwd", "stream_spread", "col_err", "logit_span")
