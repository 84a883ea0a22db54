"""The claims scorecard: ``claims.yaml`` (what and how to judge) -> verdicts, CSV and JSON.

The claim list and thresholds are data (package file ``claims.yaml``); the judging
logic is the named rule function in :mod:`mhc_bench.report.rules`. A rule that
fails on unexpected data gives "inconclusive" with the error as its reason, so
one bad column never hides the other claims.
"""

from __future__ import annotations

import csv
import json
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from mhc_bench.report.rules import INCONCLUSIVE, RULES, Evidence, Outcome

FIELDS = [
    "id",
    "claim",
    "paper_figure",
    "paper_value",
    "reproduced_value",
    "verdict",
    "summary",
    "reason",
    "scale_tested",
    "rule",
]


def load_claims(path: Path | None = None) -> list[dict[str, Any]]:
    """The claim definitions; every rule named must exist."""
    text = (
        path.read_text() if path else resources.files("mhc_bench.report").joinpath("claims.yaml").read_text()
    )
    claims = yaml.safe_load(text)["claims"]
    for c in claims:
        if c["rule"] not in RULES:
            raise ValueError(f"claims.yaml: {c['id']}: unknown rule {c['rule']!r} (known: {sorted(RULES)})")
    return claims


def rule_params(rule: str, claims: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The params of the first claim judged by ``rule`` (tables reuse the thresholds they show)."""
    for claim in claims if claims is not None else load_claims():
        if claim["rule"] == rule:
            return dict(claim.get("params") or {})
    return {}


def _ints(rows: pd.DataFrame, column: str) -> str:
    vals = sorted({int(v) for v in rows[column] if not pd.isna(v)}) if column in rows else []
    return "/".join(map(str, vals)) or "?"


def scale_tested(rows: pd.DataFrame | None) -> str:
    """``d_model 64, blocks 2, n 1/4, steps 100, seeds 2`` for the cells a verdict used (blocks:
    transformer blocks, two residual layers each)."""
    if rows is None or rows.empty:
        return "—"
    rows = rows.drop_duplicates("cell_id")
    seeds = rows["seed"].dropna().nunique() if "seed" in rows else 0
    return (
        f"d_model {_ints(rows, 'd_model')}, blocks {_ints(rows, 'n_layer')}, n {_ints(rows, 'n')}, "
        f"steps {_ints(rows, 'steps')}, seeds {seeds}, cells {len(rows)}"
    )


def judge(claim: dict[str, Any], evidence: Evidence) -> dict[str, Any]:
    """One scorecard row."""
    try:
        out: Outcome = RULES[claim["rule"]](evidence, **(claim.get("params") or {}))
    except Exception as err:  # report the failure as the verdict's reason instead of aborting
        out = Outcome(INCONCLUSIVE, "—", f"rule failed: {type(err).__name__}: {err}")
    return {
        "id": claim["id"],
        "claim": claim["claim"],
        "paper_figure": claim.get("paper_figure", ""),
        "paper_value": claim.get("paper_value", ""),
        "reproduced_value": out.value,
        "verdict": out.verdict,
        "summary": out.summary,
        "reason": out.reason,
        "scale_tested": out.scale or scale_tested(out.rows),
        "rule": f"{claim['rule']}({', '.join(f'{k}={v}' for k, v in (claim.get('params') or {}).items())})",
    }


def applies(claim: dict[str, Any], frame: pd.DataFrame) -> bool:
    """A claim with ``when_present: {variant: v}`` or ``{experiment: e}`` is listed only when the
    profile has such cells (a variant's rows would otherwise crowd every profile's scorecard)."""
    from mhc_bench.report.compare import in_experiment

    needs = claim.get("when_present") or {}
    if "variant" in needs and ("variant" not in frame or needs["variant"] not in set(frame["variant"])):
        return False
    return "experiment" not in needs or not in_experiment(frame, needs["experiment"]).empty


def scorecard(evidence: Evidence, claims: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    chosen = claims if claims is not None else load_claims()
    return [judge(c, evidence) for c in chosen if applies(c, evidence.frame)]


def write_scorecard(rows: list[dict[str, Any]], out_dir: Path) -> tuple[Path, Path]:
    """``claims.csv`` and ``claims.json`` (same content)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / "claims.csv", out_dir / "claims.json"
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    json_path.write_text(json.dumps({"claims": rows}, indent=2, ensure_ascii=False) + "\n")
    return csv_path, json_path
