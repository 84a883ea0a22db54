"""The rules that judge the claims, one function each; thresholds come from ``claims.yaml``.

A rule gets the :class:`~mhc_bench.report.verdicts.Evidence` and its params and returns an
:class:`~mhc_bench.report.verdicts.Outcome`. Principles throughout (MHC_NOTES.md section 3b):
each claim is judged in the setting the paper measured, on the cells of the experiment that
settles it, and its reason names that experiment and its scale; a quantity bounded by
construction never decides a verdict; loss and accuracy verdicts use an interval that includes
seed and numerical noise, with the minimum detectable effect next to the paper's effect; a
degenerate setting is reported, not judged. Rules judge only: selecting and comparing cells is
in ``compare`` (and ``noise``, ``depth``, ``frontier``, ``downstream``), shared with the tables.

The rules live by subject: gains (C1-C3, findings X1-X2), training stability (C4), losses
(C5-C7), downstream accuracy (C8), overhead (C9). Importing this module registers them all.
"""

from __future__ import annotations

from mhc_bench.report import rules_downstream, rules_gains, rules_loss, rules_overhead, rules_training
from mhc_bench.report.verdicts import (
    DEGENERATE,
    FINDING,
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    RULES,
    UNDERPOWERED,
    VERDICTS,
    Evidence,
    Outcome,
)

__all__ = ["DEGENERATE", "FINDING", "INCONCLUSIVE", "NOT_REPRODUCED", "REPRODUCED", "RULES", "UNDERPOWERED",
           "VERDICTS", "Evidence", "Outcome", "rules_downstream", "rules_gains", "rules_loss",
           "rules_overhead", "rules_training"]
