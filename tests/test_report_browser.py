"""The HTML report in a real headless browser (the system chromium, driven by Playwright).

Built from a copy of the committed quick results: the page loads without console errors, every
figure decodes, every in-page link lands on an element, and nothing is wider than a 1280 px
viewport. Locally without chromium (or playwright) the test skips with the reason; CI sets
``MHC_BENCH_REQUIRE_BROWSER=1`` (``.ci/run``) and there a missing browser fails it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from mhc_bench.paths import PROJECT_ROOT

pytestmark = pytest.mark.browser

QUICK = PROJECT_ROOT / "results" / "quick"
VIEWPORT = {"width": 1280, "height": 900}
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium() -> str:
    """The system chromium, or skip (fail where the browser is required); never downloads one."""
    required = os.environ.get("MHC_BENCH_REQUIRE_BROWSER") == "1"
    found = (os.environ.get("MHC_BENCH_CHROMIUM") or shutil.which("chromium")
             or shutil.which("chromium-browser"))
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        found, why = None, "the playwright package is not installed (pip install -e '.[dev]')"
    else:
        why = "no chromium on PATH (Debian: apt-get install chromium)"
    if found is None:
        if required:
            pytest.fail(f"MHC_BENCH_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)
    return found


@pytest.fixture(scope="module")
def report_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (QUICK / "cells").is_dir():
        pytest.skip("no committed results/quick in this checkout")
    from mhc_bench.report.build import build_report

    root = tmp_path_factory.mktemp("browser")
    results = root / "results" / "quick"
    shutil.copytree(QUICK, results)
    return build_report(results, root / "report", "quick")["report_html"]


@pytest.fixture(scope="module")
def page_facts(report_html: Path) -> dict[str, Any]:
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            errors: list[str] = []
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(report_html.as_uri(), wait_until="load")
            facts = page.evaluate("""() => ({
                images: Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete,
                    width: i.naturalWidth, shown: i.getBoundingClientRect().right})),
                links: Array.from(document.querySelectorAll('a[href^="#"]')).map(a => ({
                    href: a.getAttribute('href'),
                    found: document.getElementById(
                        decodeURIComponent(a.getAttribute('href').slice(1))) !== null})),
                tables: Array.from(document.querySelectorAll('table')).map(t => ({
                    title: (t.closest('section')?.querySelector('h2')?.textContent) || '',
                    right: t.getBoundingClientRect().right})),
                scrollWidth: document.documentElement.scrollWidth,
                headings: Array.from(document.querySelectorAll('h2')).map(h => h.textContent),
                captions: document.querySelectorAll('figure figcaption').length,
            })""")
            facts["errors"] = errors
        finally:
            browser.close()
    return facts


def test_the_page_loads_without_console_errors(page_facts: dict[str, Any]) -> None:
    assert page_facts["errors"] == []


def test_every_figure_decodes_with_a_real_alt_text(page_facts: dict[str, Any]) -> None:
    images = page_facts["images"]
    assert len(images) == 9 and page_facts["captions"] == 9
    for img in images:
        assert img["complete"] and img["width"] > 0, img["alt"]
        assert len(img["alt"]) > 40 and "_" not in img["alt"], img["alt"]  # words, not a file name
        assert img["shown"] <= VIEWPORT["width"], img["alt"]


def test_every_in_page_link_resolves(page_facts: dict[str, Any]) -> None:
    links = page_facts["links"]
    assert len(links) > 20  # contents, summary and claims link into the page
    assert [link["href"] for link in links if not link["found"]] == []


def test_no_table_overflows_the_viewport(page_facts: dict[str, Any]) -> None:
    wide = [(t["title"], t["right"]) for t in page_facts["tables"] if t["right"] > VIEWPORT["width"]]
    assert wide == [] and page_facts["scrollWidth"] <= VIEWPORT["width"]


def test_the_verdict_summary_comes_first(page_facts: dict[str, Any]) -> None:
    assert page_facts["headings"][:2] == ["Verdict summary", "Claims in full"]


def test_a_missing_browser_fails_where_it_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("MHC_BENCH_CHROMIUM", raising=False)
    monkeypatch.setenv("MHC_BENCH_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="MHC_BENCH_REQUIRE_BROWSER=1 but no chromium"):
        _chromium()
    monkeypatch.delenv("MHC_BENCH_REQUIRE_BROWSER")
    with pytest.raises(pytest.skip.Exception, match="no chromium"):
        _chromium()
