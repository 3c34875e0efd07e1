"""Browser tests: Debian's Chromium, headless, driven by Playwright, against devstore's admin page
framing the app (tests/e2e/harness.py's world). Screenshots of every page go to ``test-artefacts/``.

Chromium must be there (``.ci/services`` installs it): without it these tests fail, they never skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from app.config import ROOT

CHROMIUM = os.environ.get("ONCECODE_CHROMIUM", "/usr/bin/chromium")
ARTEFACTS = ROOT / "test-artefacts" / "screenshots"


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium (or set ONCECODE_CHROMIUM)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    yield opened
    context.close()


def screenshot(page: Page, name: str) -> None:
    """The page as it looks now, at desktop width and at 360 px, under test-artefacts/screenshots/."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size or {"width": 1280, "height": 900}
    page.screenshot(path=str(ARTEFACTS / f"{name}-desktop.png"), full_page=True)
    page.set_viewport_size({"width": 360, "height": 800})
    page.wait_for_timeout(150)
    page.screenshot(path=str(ARTEFACTS / f"{name}-360.png"), full_page=True)
    page.set_viewport_size(size)
