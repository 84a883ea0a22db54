"""``mhc-bench bench --quick`` writes bench.json and bench.md with the documented keys."""

from __future__ import annotations

import json
import math

from mhc_bench.cli import main

ROW_KEYS = {"variant", "n", "d_model", "path", "step_time_ms", "tokens_per_s", "peak_mem_mb",
            "activation_mb", "ratio_to_baseline"}


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_quick_bench_writes_tables(tmp_path) -> None:
    assert main(["bench", "--quick", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["schema_version"] == 1
    assert data["meta"]["environment"]["torch_threads"] >= 1
    rows = data["rows"]
    assert {(r["variant"], r["n"]) for r in rows} == {("baseline", 1), ("hc", 1), ("hc", 4), ("mhc", 1),
                                                       ("mhc", 4)}
    for row in rows:
        assert ROW_KEYS <= row.keys()
        assert all(_positive(row[k]) for k in ROW_KEYS - {"variant", "path"})
    base = next(r for r in rows if r["variant"] == "baseline")
    assert base["ratio_to_baseline"] == 1.0
    mhc4 = next(r for r in rows if r["variant"] == "mhc" and r["n"] == 4)
    assert mhc4["activation_mb"] > base["activation_mb"]  # four streams hold more than one
    (rc,) = data["recompute"]
    assert rc["on"]["activation_mb"] < rc["off"]["activation_mb"]
    assert 0 < rc["activation_saving"] < 1
    assert {m["op"] for m in data["micro"]} == {"maps", "pre", "post_res"}
    assert all(_positive(m["fwd_ms"]) and _positive(m["fwd_bwd_ms"]) for m in data["micro"])
    assert {p["impl"] for p in data["peer"]} == {"peer", "ours/torch"}
    assert all(_positive(p["fwd_bwd_ms"]) and _positive(p["activation_mb"]) for p in data["peer"])
    md = (tmp_path / "bench.md").read_text()
    for title in ("Training step", "Selective recompute", "Kernel microbenchmarks", "Peer comparison"):
        assert title in md
