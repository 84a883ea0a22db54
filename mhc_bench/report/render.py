"""Markdown and HTML rendering of the report (no template engine, no tabulate).

The HTML page embeds the plots as base64 data URIs so it stays one
self-contained file when copied off a cluster.
"""

from __future__ import annotations

import base64
import html
import platform
import re
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from mhc_bench.provenance import cpu_model
from mhc_bench.report.aggregate import bench_environment
from mhc_bench.report.tables import Table
from mhc_bench.tracking import relative_to_workdir

_PACKAGES = (
    "mhc-bench",
    "torch",
    "triton",
    "lightning",
    "lm-eval",
    "mlflow",
    "numpy",
    "pandas",
    "matplotlib",
)


def environment(bench: dict[str, Any] | None) -> dict[str, dict[str, str]]:
    """Hardware and versions: the benchmark's own record when present, else this machine's."""
    bench_hw, bench_versions = bench_environment(bench)
    hardware = {str(k): str(v) for k, v in bench_hw.items() if v not in ("", None)}
    versions = {str(k): str(v) for k, v in bench_versions.items()}
    source = "bench.json" if hardware else "this machine (report build; no bench.json hardware record)"
    if not hardware:
        hardware = {"machine": platform.machine(), "platform": platform.platform()}
    hardware.setdefault("cpu", cpu_model())
    for pkg in _PACKAGES:
        if pkg not in versions:
            try:
                versions[pkg] = metadata.version(pkg)
            except metadata.PackageNotFoundError:
                continue
    versions.setdefault("python", platform.python_version())
    return {"hardware": hardware, "versions": versions, "source": {"from": source}}


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "_(no rows)_"
    head = "| " + " | ".join(_cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def _kv(d: dict[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items())


def render_markdown(
    title: str, header: list[str], sections: list[Table], plots: list[Path], plot_dir_name: str = "plots"
) -> str:
    parts = [f"# {title}", "", *header, ""]
    for t in sections:
        parts += [f"## {t.title}", "", markdown_table(t.frame), ""]
        parts += [f"_{n}_" if n else "" for n in t.notes]
        parts.append("")
    if plots:
        parts += ["## Plots", ""]
        parts += [f"![{p.stem}]({plot_dir_name}/{p.name})" for p in plots]
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"


def _inline(text: str) -> str:
    """Escape, then turn the header's Markdown ``**bold**`` and backticks into HTML."""
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(text))
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def render_html(title: str, header: list[str], sections: list[Table], plots: list[Path]) -> str:
    esc = html.escape
    out = [
        "<!DOCTYPE html>",
        "<html><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1600px}"
        "table{border-collapse:collapse;font-size:13px;margin-bottom:.5em}"
        "th,td{border:1px solid #ccc;padding:3px 6px;text-align:left}th{background:#f0f0f0}"
        "td.reproduced{background:#d9f2d9}td.not-reproduced{background:#f8d7d7}"
        "td.inconclusive{background:#fff3cd}img{max-width:100%;border:1px solid #eee}"
        ".note{color:#555;font-size:13px}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    out += [f"<p>{_inline(line.lstrip('- '))}</p>" for line in header if line.strip()]
    for t in sections:
        out.append(f"<h2>{esc(t.title)}</h2>")
        if t.frame.empty:
            out.append("<p><em>(no rows)</em></p>")
        else:
            rows = ["<tr>" + "".join(f"<th>{esc(str(c))}</th>" for c in t.frame.columns) + "</tr>"]
            for row in t.frame.itertuples(index=False):
                cells = []
                for col, val in zip(t.frame.columns, row, strict=True):
                    css = f" class='{str(val).replace(' ', '-')}'" if col == "verdict" else ""
                    cells.append(f"<td{css}>{esc(str(val))}</td>")
                rows.append("<tr>" + "".join(cells) + "</tr>")
            out.append("<table>" + "".join(rows) + "</table>")
        out += [f"<p class='note'>{esc(n)}</p>" for n in t.notes if n]
    if plots:
        out.append("<h2>Plots</h2>")
        for p in plots:
            data = base64.b64encode(p.read_bytes()).decode()
            out.append(f"<h3>{esc(p.stem)}</h3><img alt='{esc(p.stem)}' src='data:image/png;base64,{data}'>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def header_lines(
    profile: str, results_dir: Path, env: dict[str, dict[str, str]], n_cells: int, tracking_message: str
) -> list[str]:
    return [
        f"- **Profile:** {profile} ({n_cells} cell folders in `{relative_to_workdir(results_dir)}`)",
        f"- **Hardware** ({env['source']['from']}): {_kv(env['hardware'])}",
        f"- **Versions:** {_kv(env['versions'])}",
        f"- **MLflow:** {tracking_message}",
        "- Verdicts: reproduced / not reproduced / inconclusive; rules and thresholds in "
        "`mhc_bench/report/claims.yaml`. Nothing is retrained to build this report.",
    ]
