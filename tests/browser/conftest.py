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
    """The page as it looks now, at desktop width and at 360 px, under test-artefacts/screenshots/: the
    whole of the app, the admin's frame made as tall as the app's page (it fills the window otherwise)."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size or {"width": 1280, "height": 900}
    for width, suffix in ((size["width"], "desktop"), (360, "360")):
        page.set_viewport_size({"width": width, "height": 800 if width == 360 else size["height"]})
        page.wait_for_timeout(150)
        page.set_viewport_size({"width": width, "height": _whole_height(page)})
        page.wait_for_timeout(100)
        page.screenshot(path=str(ARTEFACTS / f"{name}-{suffix}.png"), full_page=True)
    page.set_viewport_size(size)


def _whole_height(page: Page) -> int:
    """The window's height that shows the app's page whole below the admin's own header (at most 8000)."""
    top = page.evaluate("() => { const f = document.querySelector('iframe'); "
                        "return f ? f.getBoundingClientRect().top + window.scrollY : 0; }")
    inner = page.frames[-1].evaluate("() => document.documentElement.scrollHeight") if len(page.frames) > 1 else 0
    return min(8000, max(int(top + inner) + 1, page.viewport_size["height"] if page.viewport_size else 800))
