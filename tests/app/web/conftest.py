"""One headless Chromium per test module (Debian's, via Playwright), skipped with its reason
when there is none (failed under ``REQUIRE_BROWSER=1``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.app.web.browser import chromium_path, no_browser

if TYPE_CHECKING:
    from playwright.sync_api import Browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        no_browser("Playwright for Python is not installed (requirements/dev.txt)")
    executable = chromium_path()
    if executable is None:
        no_browser("no chromium found (apt-get install chromium, or set CHROMIUM_PATH)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield launched
        finally:
            launched.close()
