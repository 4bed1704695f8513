"""Headless Chromium (Debian's `chromium`) driven by Playwright, for the web apps' browser tests.

Owns how a test gets a browser: one Chromium process per page, each with a fresh profile, the
flags every test needs, where screenshots go, and teardown. What the pages do is the tests'.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from relaynet import ROOT

playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium")
NEEDS_CHROMIUM = pytest.mark.skipif(CHROMIUM is None,
                                    reason="Debian's chromium is not installed (.ci/setup --tests)")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = (ROOT / "docs" / "screenshots" if os.environ.get("STEMFLOW_UPDATE_SCREENSHOTS")
               else Path(tempfile.gettempdir()) / "stemflow-screenshots")
"""Where the screenshots go: docs/screenshots/ with STEMFLOW_UPDATE_SCREENSHOTS=1 (then look
at them before committing), else a temporary folder, so a test run leaves the clone clean."""
WAIT_MS = 20_000


class Browsers:
    """Chromium processes, each with a fresh profile, closed at the end."""

    def __init__(self, args: tuple[str, ...] = ()) -> None:
        self.args = [*CHROMIUM_ARGS, *args]
        self.pw = playwright_api.sync_playwright().start()
        self.contexts: list = []
        self.profiles: list[str] = []

    def open(self, url: str, viewport: tuple[int, int] = (1180, 760)):
        profile = tempfile.mkdtemp(prefix="stemflow-chromium-")
        self.profiles.append(profile)
        ctx = self.pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=self.args,
            viewport={"width": viewport[0], "height": viewport[1]})
        self.contexts.append(ctx)
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']", timeout=WAIT_MS)
        return page

    def close(self) -> None:
        for ctx in self.contexts:
            ctx.close()
        self.pw.stop()
        for p in self.profiles:
            shutil.rmtree(p, ignore_errors=True)
