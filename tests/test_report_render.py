"""Rendering: tabulate tables with the former content, templates, the verdict summary, what the
header may say (results only), and the growth table's "never"."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from mhc_bench.report import depth as dep
from mhc_bench.report import experiment_tables as xt
from mhc_bench.report import tables
from mhc_bench.report.plots import FIGURES
from mhc_bench.report.render import (
    Report,
    environment,
    header_lines,
    markdown_table,
    render_html,
    render_markdown,
    short_reason,
)
from mhc_bench.report.tables import Table


def _old_markdown_table(frame: pd.DataFrame) -> str:
    """The hand-written formatter tabulate replaced."""
    cell = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    head = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def _cells(md: str) -> list[list[str]]:
    rows = [line for line in md.splitlines() if not set(line) <= set("|-: ")]
    return [[c.strip() for c in line.strip().strip("|").replace("\\|", "\0").split("|")] for line in rows]


def test_markdown_tables_keep_their_content() -> None:
    frame = pd.DataFrame({"variant": ["hc", "mhc"], "gap | CI": ["+0.0252 ± 0.1447 (n=2)", "1e-05"],
                          "note": ["a\nb", "0.003"]})
    new, old = markdown_table(frame), _old_markdown_table(frame)
    assert _cells(new) == _cells(old)  # same cells; only the padding differs
    assert "1e-05" in new and "0.003" in new  # printed as given, not re-parsed as numbers
    assert markdown_table(pd.DataFrame()) == "_(no rows)_"


REASONS = {
    "experiments main+depth at d64-b1/d64-b2 (n=2/4, 3 seeds): outside [0.9, 1.1] in 2 of 9 cells: "
    "mhc-n4-d64-b4-lr1e+00-noclip-s0-4c1694, mhc-n4-d64-b4-lr1e+00-noclip-s1-a23a4b; every one of them "
    "trained without gradient clipping at lr 1 (min column sum of their composite maps 0.457: the Sinkhorn "
    "projection is unconverged there)":
        "outside [0.9, 1.1] in 2 of 9 cells; every one of them trained without gradient clipping at lr 1",
    "frontier experiment at d64-b4 n=4, lr 0.03-1 (2 seeds): hc diverged in 2/2 seeds at lr 1, where mhc "
    "diverged in no seed": "hc diverged in 2/2 seeds at lr 1, where mhc diverged in no seed",
}


def test_the_summary_reason_is_one_short_sentence() -> None:
    for full, short in REASONS.items():
        assert short_reason(full) == short
    long = "needs a GPU: " + " ".join(f"word{i}" for i in range(60))
    assert short_reason(long).endswith(" …") and len(short_reason(long).split()) <= 33


def _cell(version: str | None) -> SimpleNamespace:
    return SimpleNamespace(eval={"lm_eval_version": version} if version else None)


def test_the_header_says_only_what_the_results_recorded() -> None:
    bench = {"meta": {"environment": {"device": "cpu", "cpu": "Recorded CPU", "cpu_count": 2,
                                      "versions": {"torch": "2.13.0"}}}}
    env = environment(bench, [_cell("0.4.13"), _cell(None)])
    assert env["hardware"] == {"device": "cpu", "cpu": "Recorded CPU", "cpu_count": "2"}
    assert env["versions"] == {"torch": "2.13.0", "lm-eval": "0.4.13"}
    lines = header_lines("quick", Path("results/quick"), env, 3, "checked")
    assert "- **Hardware** (bench.json): device cpu, cpu Recorded CPU, cpu_count 2" in lines
    assert "- **Versions** (bench.json; lm-eval from eval.json): torch 2.13.0, lm-eval 0.4.13" in lines
    bare = header_lines("quick", Path("results/quick"), environment(None, []), 0, "absent")
    assert "- **Hardware:** not recorded (no bench.json in the results)" in bare
    assert "- **Versions:** not recorded (no bench.json in the results)" in bare


def _fit(slope: float, half: float | None) -> dep.GrowthFit:
    return dep.GrowthFit(8, (2, 4, 8, 16), slope, half, 0.0)


def test_a_flat_fit_never_reaches_the_paper_s_peak() -> None:
    assert xt.reach_text(_fit(math.log(1.133), 0.02), 3000) == f"~{math.log(3000) / math.log(1.133):.0f}"
    assert xt.reach_text(_fit(1.5e-8, 1e-9), 3000) == "never (flat fit)"  # mHC: x1.0000 per layer
    assert xt.reach_text(_fit(0.05, 0.08), 3000) == "never (flat fit)"  # CI includes growth <= 1
    assert xt.reach_text(_fit(-0.01, 0.001), 3000) == "never (no growth)"


def test_the_overhead_note_names_the_kernels_the_cells_ran() -> None:
    note = tables.overhead_table(pd.DataFrame(), "auto").notes[0]
    assert "model.kernels = auto" in note and "torch path unless" not in note


def _report(tmp_path: Path) -> Report:
    png = tmp_path / "plots" / "gain_vs_depth.png"
    png.parent.mkdir()
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    claims = [{"id": "C1", "claim": "mHC gain <~1>", "paper_figure": "Fig. 7a", "paper_value": "~1.0",
               "reproduced_value": "1.000", "verdict": "not reproduced", "reason": "a <b> reason; more",
               "scale_tested": "d64", "rule": "x"}]
    frame = pd.DataFrame({"a": ["<script>x</script>"], "verdict": ["reproduced"]})
    table = Table("Odd <title>", frame, ["n1"])
    return Report("T", ["- **Profile:** q"], claims, ["claims note"], [table], [png])


def test_both_documents_share_order_anchors_and_captions(tmp_path: Path) -> None:
    report = _report(tmp_path)
    md, page = render_markdown(report), render_html(report)
    assert md.index("## Verdict summary") < md.index("## Claims in full") < md.index("## Odd <title>")
    assert "[C1](#claim-c1)" in md and '<a id="claim-c1"></a>' in md
    assert f"![{FIGURES['gain_vs_depth'].alt}](plots/gain_vs_depth.png)" in md
    assert page.index('id="summary"') < page.index('id="claims"') < page.index('id="odd-title"')
    assert "<script>x</script>" not in page and "&lt;script&gt;" in page  # values are escaped
    assert f'alt="{FIGURES["gain_vs_depth"].alt}"' in page and "data:image/png;base64," in page
    assert "<figcaption>" + FIGURES["gain_vs_depth"].caption.split(" ")[0] in page
    assert 'class="verdict not-reproduced"' in page and 'class="verdict reproduced"' in page
    assert 'href="#figure-gain-vs-depth"' in page and 'id="figure-gain-vs-depth"' in page
