"""The paper's numbers that tables and plots print next to the reproduced ones (arXiv:2512.24880).

Thresholds that decide verdicts are not here: they are data in ``claims.yaml``.
"""

from __future__ import annotations

# The variants the paper measured each number on (the report prints a paper value next to that
# variant's rows only).
PROPOSED = "mhc"  # the paper's method
ABLATED = "hc"  # Table 1 ablates Hyper-Connections
OVERHEAD = 0.067  # +6.7 % training time at n = 4 with fused kernels (27B, Section 4)
ABLATION = {"none": 0.0, "res": -0.022, "res+pre": -0.025, "res+pre+post": -0.027}  # Table 1, HC, 27B
N_GAPS = {2: -0.009, 4: -0.018, 8: -0.022}  # mHC loss gap vs n (a secondary source)
HC_PEAK = 3000.0  # HC's composite gain peak at 27B (Fig. 3b)
