"""The report's figures: small multiples of a readable size, one style per variant from one place,
CI bands that survive log axes. Drawn from the committed quick results (read only)."""

from __future__ import annotations

import ast
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mhc_bench.paths import PROJECT_ROOT
from mhc_bench.report import depth as dep
from mhc_bench.report import plots
from mhc_bench.report.aggregate import build_frame
from mhc_bench.report.cells import read_cells
from mhc_bench.report.compare import completed, in_experiment, trained

QUICK = PROJECT_ROOT / "results" / "quick"
MAX_WIDTH_PX = 1400  # the HTML report shows figures at up to ~1200 px


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def quick() -> tuple[pd.DataFrame, list[Any]]:
    if not (QUICK / "cells").is_dir():
        pytest.skip("no committed results/quick in this checkout")
    cells = read_cells(QUICK)
    frame, _ = build_frame(cells)
    return frame, cells


@pytest.fixture(scope="module")
def figures(quick: tuple[pd.DataFrame, list[Any]], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    frame, cells = quick
    return plots.make_plots(frame, cells, tmp_path_factory.mktemp("plots"))


def test_every_figure_fits_the_report_width(figures: list[Path]) -> None:
    assert {p.stem for p in figures} == set(plots.FIGURES)
    for path in figures:
        width, height = _png_size(path)
        assert 600 <= width <= MAX_WIDTH_PX, (path.name, width)
        assert height <= 2600, (path.name, height)
    sizes = {p.stem: _png_size(p) for p in figures}
    width, height = sizes["accuracy_by_n"]  # 7 tasks wrap into rows instead of one 3500 px strip
    assert width <= 1300 and height >= 500


def test_every_figure_has_a_title_caption_and_alt_text() -> None:
    for name, text in plots.FIGURES.items():
        assert text.title and len(text.caption) > 80 and len(text.alt) > 60, name
        assert name not in text.alt  # alt text describes the figure, not its file name


def test_registered_variants_keep_their_style_and_unknown_ones_get_a_stable_one() -> None:
    from mhc_bench import variants

    known = {v: plots.variant_style(v) for v in variants.names()}
    assert len({s["color"] for s in known.values()}) == len(known)
    assert len({s["marker"] for s in known.values()}) == len(known)
    assert known["mhc_lite"]["label"] == variants.get("mhc_lite").label == "mHC-lite"
    for name in ("my_plugin", "another_one"):
        style = plots.variant_style(name)
        assert style == plots.variant_style(name) and set(style) == {"color", "marker", "label"}
        assert style["label"] == name and style["color"] not in {s["color"] for s in known.values()}
    assert plots.variant_style("my_plugin") != plots.variant_style("another_one")


def test_no_variant_name_is_hard_coded_in_plotting() -> None:
    """Plotting asks :func:`variant_style`, which asks the variant registry: it never names a variant."""
    from mhc_bench import variants

    tree = ast.parse((PROJECT_ROOT / "mhc_bench" / "report" / "plots.py").read_text())
    named = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in variants.names()]
    assert named == []


def test_log_bands_stay_positive_where_the_linear_interval_crosses_zero() -> None:
    seeds = [[1.0, 1.2], [1.5, 10.0], [3.0, 40.0]]  # two seeds: t = 12.7, the arithmetic CI reaches below 0
    linear = plots.band([2, 4, 8], seeds, log=False)
    log = plots.band([2, 4, 8], seeds, log=True)
    assert linear is not None and log is not None and (linear.low < 0).any()
    assert (log.low > 0).all() and (log.high > log.mean).all() and (log.mean > 0).all()
    assert log.mean[1] == pytest.approx(math.sqrt(1.5 * 10.0))  # the geometric mean
    only_nonpositive = plots.band([1], [[0.0, -1.0]], log=True)
    assert only_nonpositive is None  # nothing a log axis can show


def test_the_committed_depth_band_is_drawable_on_its_log_axis(quick: tuple[pd.DataFrame, list[Any]]) -> None:
    """The forward panel of gain_vs_depth lost its band: HC's arithmetic CI crosses 0 at L = 4 and 16."""
    frame, _ = quick
    rows = trained(in_experiment(frame, "depth"))
    hc = rows[rows["variant"] == "hc"]
    points = dep.depth_points(hc, "fwd")
    assert any(p.gain.low < 0 for p in points)  # the old band could not be drawn there
    done = completed(hc)
    depth, gain = dep.layers(done), dep.composite_gain(done, "fwd")
    xs = sorted({int(v) for v in depth})
    b = plots.band(xs, [list(gain[depth == x]) for x in xs], log=True)
    assert b is not None and np.isfinite(b.low).all() and (b.low > 0).all()


def test_a_new_variant_gets_drawn_without_code_changes(quick: tuple[pd.DataFrame, list[Any]],
                                                       tmp_path: Path) -> None:
    frame, cells = quick
    renamed = frame.copy()
    renamed["variant"] = renamed["variant"].replace({"mhc": "rowstoch"})
    paths = [plots.loss_curves(renamed, {c.cell_id: c for c in cells}, tmp_path),
             plots.stability_frontier(renamed, tmp_path), plots.loss_gap_vs_n(renamed, tmp_path)]
    for path in paths:
        assert _png_size(path)[0] <= MAX_WIDTH_PX
