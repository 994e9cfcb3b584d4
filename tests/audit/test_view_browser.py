"""The report in a real browser: Debian's chromium, headless, driven by Playwright.

No browser is downloaded: Playwright starts the system binary (``CHROMIUM``, installed by
``scripts/bootstrap.sh``). Outside CI a missing browser or Playwright skips; with ``CI`` set
it fails, like a missing Docker engine.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rlmbox.audit.view.report import write_report

from .view_run import DENIED_RULE, MARKUP, RealRun

CHROMIUM = Path("/usr/bin/chromium")


def need(what: str) -> None:
    """Skips, or fails when CI is set: CI must never silently skip the browser test."""
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {what}")
    pytest.skip(what)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need("playwright is not installed (pip install -e '.[dev]')")
    if not CHROMIUM.exists():
        need(f"no browser at {CHROMIUM} (bash scripts/bootstrap.sh installs Debian's chromium)")
    with sync_playwright() as playwright:
        # as root, chromium refuses its own sandbox; the page runs no script anyway
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                              args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


class Opened:
    """A report loaded in a fresh page, with every request and console message it made."""

    def __init__(self, browser: Any, report: Path) -> None:
        self.requests: list[str] = []
        self.console: list[str] = []
        self.page = browser.new_page(viewport={"width": 1100, "height": 900})
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("console", lambda message: self.console.append(message.text))
        self.url = report.resolve().as_uri()
        self.page.goto(self.url)

    def close(self) -> None:
        self.page.close()


def open_report(browser: Any, audit_dir: Path, out: Path) -> Opened:
    write_report(audit_dir, out)
    return Opened(browser, out)


def test_the_report_of_a_real_run_in_a_browser(browser: Any, real_run: RealRun,
                                               tmp_path: Path) -> None:
    opened = open_report(browser, real_run.audit_dir, tmp_path / "report.html")
    page = opened.page
    try:
        banner = page.locator(".banner.verified")
        assert banner.is_visible()
        assert "VERIFIED" in banner.inner_text()
        tree = page.locator("ul.tree li")
        assert tree.count() == 2
        assert tree.nth(1).get_attribute("data-depth") == "1"
        tree.nth(1).locator("a").click()
        assert page.url.endswith("#s1")
        assert page.locator("#s1 h2").inner_text() == f"Session {real_run.child}"
        denied = page.locator(".call.deny")
        assert denied.count() == 1
        assert DENIED_RULE in denied.inner_text()
        lines = page.locator("svg.budget-chart polyline")
        assert lines.count() == 3
        box = page.locator("svg.budget-chart").bounding_box()
        assert box is not None
        assert box["width"] > 300
        assert box["height"] > 100
        assert opened.requests == [opened.url]   # nothing fetched: no network, no asset
    finally:
        opened.close()


def test_markup_printed_by_a_cell_does_not_run_in_the_browser(browser: Any, real_run: RealRun,
                                                              tmp_path: Path) -> None:
    opened = open_report(browser, real_run.audit_dir, tmp_path / "report.html")
    page = opened.page
    try:
        assert page.evaluate("() => window.pwned") is None
        assert page.title().startswith("rlmbox audit report")
        assert page.locator("#injected").count() == 0
        assert page.locator("script, img").count() == 0
        for stream in ("stdout", "stderr", "error"):
            shown = page.locator(f"pre.{stream}", has_text="window.pwned=3")
            assert shown.count() == 1, stream
            assert MARKUP in shown.inner_text(), stream
        assert opened.requests == [opened.url]   # the <img src=x> was text, never fetched
    finally:
        opened.close()


def test_a_tampered_log_shows_the_failure_banner_in_a_browser(
        browser: Any, real_run: RealRun, tmp_path: Path) -> None:
    copy = tmp_path / "audit"
    shutil.copytree(real_run.audit_dir, copy)
    log = copy / "audit.jsonl"
    log.write_bytes(log.read_bytes().replace(b'"decision":"deny"', b'"decision":"permit"', 1))
    opened = open_report(browser, copy, tmp_path / "tampered.html")
    try:
        banner = opened.page.locator(".banner.failed")
        assert banner.is_visible()
        assert "FAIL: first bad record" in banner.inner_text()
        assert opened.page.locator(".banner.verified").count() == 0
    finally:
        opened.close()
