"""Aggregation, tables, plots and the claims scorecard (``mhc-bench report``).

Reads a profile's results folder and never retrains anything. ``build_report``
is loaded lazily so that importing the command module (for ``--help``) stays
free of pandas and matplotlib.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_report"]


def __getattr__(name: str) -> Any:
    if name == "build_report":
        from mhc_bench.report.build import build_report

        return build_report
    raise AttributeError(name)
