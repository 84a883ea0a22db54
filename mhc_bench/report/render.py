"""Markdown and HTML rendering of the report: Jinja2 templates (``templates/``), tables by tabulate.

Both documents have the same order: the header, a table of contents, the verdict summary (claim,
verdict, one short reason), each claim in full, the other tables with their notes, and the figures
with their captions. The HTML page embeds the plots as base64 data URIs so it stays one
self-contained file when copied off a cluster.

Everything printed comes from the results (``bench.json``, the cells' files), never from the
machine that builds the report, so the same results give the same bytes anywhere.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
from markupsafe import Markup
from tabulate import tabulate

from mhc_bench.report.aggregate import bench_environment
from mhc_bench.report.plots import FIGURES, FigureText
from mhc_bench.report.tables import Table
from mhc_bench.report.verdicts import VERDICTS
from mhc_bench.tracking import relative_to_workdir

VERDICT_ORDER = VERDICTS
SHORT_WORDS = 32  # the verdict summary's reason: one sentence, about this long
_CELL_ID = r"[a-z][a-z0-9_]*-n\d+-d\d+-b\d+-[^\s,;()]*?-s\d+-[0-9a-f]{6}"


@dataclass(frozen=True)
class Report:
    """What both documents show, in their order."""

    title: str
    header: list[str]  # Markdown lines (``**bold**``, backticks)
    claims: list[dict[str, Any]]  # scorecard rows (claims.FIELDS)
    claim_notes: list[str]
    sections: list[Table]
    figures: list[Path]
    plot_dir_name: str = "plots"


def environment(bench: dict[str, Any] | None, cells: list[Any] = ()) -> dict[str, Any]:
    """Hardware and versions as the results recorded them: the benchmark's record (bench.json) and
    the lm-eval version of the cells' eval.json; nothing from the machine building the report."""
    bench_hw, bench_versions = bench_environment(bench)
    hardware = {str(k): str(v) for k, v in bench_hw.items() if v not in ("", None)}
    versions = {str(k): str(v) for k, v in bench_versions.items() if v not in ("", None)}
    sources = ["bench.json"] if hardware or versions else []
    lm_eval = sorted({str(c.eval["lm_eval_version"]) for c in cells
                      if isinstance(getattr(c, "eval", None), dict) and c.eval.get("lm_eval_version")})
    if lm_eval:
        versions["lm-eval"] = "/".join(lm_eval)
        sources.append("lm-eval from eval.json")
    return {"hardware": hardware, "versions": versions, "sources": sources}


def _kv(d: dict[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items())


def header_lines(profile: str, results_dir: Path, env: dict[str, Any], n_cells: int,
                 tracking_message: str) -> list[str]:
    hardware = (f"- **Hardware** (bench.json): {_kv(env['hardware'])}" if env["hardware"]
                else "- **Hardware:** not recorded (no bench.json in the results)")
    versions = (f"- **Versions** ({'; '.join(env['sources'])}): {_kv(env['versions'])}" if env["versions"]
                else "- **Versions:** not recorded (no bench.json in the results)")
    return [
        f"- **Profile:** {profile} ({n_cells} cell folders in `{relative_to_workdir(results_dir)}`)",
        hardware,
        versions,
        f"- **MLflow:** {tracking_message}",
        "- Verdicts: reproduced / not reproduced / inconclusive; rules and thresholds in "
        "`mhc_bench/report/claims.yaml`. Nothing is retrained to build this report.",
    ]


def _context_free(clause: str) -> str:
    """A reason clause without the experiment and scale it was judged at, its cell-id lists and
    its long parentheticals (the full reason keeps all of them)."""
    clause = re.sub(r"^[\w+]+ experiments? at [^:]*?\)(?: \([^)]*\))?: ", "", clause.strip())
    clause = re.sub(r"^experiments [\w+]+ at [^:]*?\): ", "", clause)
    clause = re.sub(rf":? ?{_CELL_ID}(?:, {_CELL_ID})+", "", clause)
    clause = re.sub(r" \(([^()]*)\)", lambda m: "" if len(m.group(1).split()) > 8 else m.group(0), clause)
    return clause.strip()


def short_reason(reason: str, words: int = SHORT_WORDS) -> str:
    """The verdict's reason in about a sentence, for the summary: its clauses (split at '; ') as
    long as they fit in ``words`` words (at least the first, cut with '…' if it is longer)."""
    clauses = [c for c in (_context_free(c) for c in reason.split("; ")) if c]
    out: list[str] = []
    for clause in clauses:
        if out and len(" ".join([*out, clause]).split()) > words:
            break
        out.append(clause)
    text = "; ".join(out)
    parts = text.split()
    if len(parts) > words:
        text = " ".join(parts[:words]).rstrip(",;:") + " …"
    return text


def slug(title: str, taken: set[str]) -> str:
    """A stable, unique in-page anchor for ``title``."""
    base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"
    name, i = base, 2
    while name in taken:
        name, i = f"{base}-{i}", i + 1
    taken.add(name)
    return name


def _md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured pipe table (tabulate), every value as printed (no number parsing)."""
    if frame.empty:
        return "_(no rows)_"
    rows = [[_md_cell(v) for v in row] for row in frame.itertuples(index=False)]
    headers = [_md_cell(c) for c in frame.columns]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _inline(text: str) -> Markup:
    """Escape, then turn the header's Markdown ``**bold**`` and backticks into HTML."""
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(text))
    return Markup(re.sub(r"`(.+?)`", r"<code>\1</code>", text))


def _verdict_class(verdict: str) -> str:
    return re.sub(r"[^a-z]+", "-", str(verdict).lower()).strip("-")


_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("mhc_bench.report", "templates"),
    autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
)
_ENV.filters["inline"] = _inline
_ENV.globals["zip"] = zip
_ENV.filters["verdict_class"] = _verdict_class


def _figure_text(path: Path) -> FigureText:
    return FIGURES.get(path.stem) or FigureText(path.stem.replace("_", " "), "", f"figure {path.stem}")


def _context(report: Report) -> dict[str, Any]:
    """Everything the templates print, with anchors assigned once (both documents share them)."""
    taken: set[str] = {"contents", "summary", "claims", "figures"}
    claims = []
    for row in report.claims:
        claims.append({**row, "anchor": slug(f"claim {row['id']}", taken),
                       "short": short_reason(row.get("summary") or row["reason"])})
    counts = {v: sum(r["verdict"] == v for r in report.claims) for v in VERDICT_ORDER}
    counts_text = ", ".join(f"{n} {v}" for v, n in counts.items() if n) or "no claims"
    sections = []
    for t in report.sections:
        sections.append({"title": t.title, "anchor": slug(t.title, taken), "frame": t.frame,
                         "columns": [str(c) for c in t.frame.columns],
                         "rows": [[str(v) for v in row] for row in t.frame.itertuples(index=False)],
                         "markdown": markdown_table(t.frame), "notes": [n for n in t.notes if n]})
    figures = []
    for p in report.figures:
        text = _figure_text(p)
        figures.append({"name": p.name, "anchor": slug(f"figure {p.stem}", taken), "title": text.title,
                        "caption": text.caption, "alt": text.alt,
                        "src": f"{report.plot_dir_name}/{p.name}", "path": p})
    summary = pd.DataFrame(
        [{"claim": f"[{c['id']}](#{c['anchor']}) {c['claim']}", "verdict": f"**{c['verdict']}**",
          "why, in short": c["short"]} for c in claims],
        columns=["claim", "verdict", "why, in short"])
    return {"title": report.title, "header": report.header, "claims": claims,
            "claim_notes": report.claim_notes, "counts": counts, "counts_text": counts_text,
            "summary_markdown": markdown_table(summary),
            "sections": sections, "figures": figures}


def render_markdown(report: Report) -> str:
    text = _ENV.get_template("report.md.j2").render(**_context(report))
    return re.sub(r"\n{3,}", "\n\n", text).rstrip() + "\n"


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def render_html(report: Report) -> str:
    context = _context(report)
    for fig in context["figures"]:
        fig["src"] = _data_uri(fig["path"])
    return _ENV.get_template("report.html.j2").render(**context).rstrip() + "\n"
