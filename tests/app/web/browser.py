"""A real headless Chromium for the web page's tests: Debian's ``chromium`` driven by Playwright
(its own browser download cannot run here), the guard that fails every request leaving the
loopback server, and the page checks the tests share.

Without a browser (no Playwright, no chromium binary) the tests skip with the reason, unless
``REQUIRE_BROWSER=1`` (``.ci/run`` sets it after installing chromium): then they fail.
"""

from __future__ import annotations

import base64
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import FilePayload, Page, Route, ViewportSize

ROOT = Path(__file__).resolve().parents[3]
SCREENSHOTS = ROOT / "reports" / "screenshots"
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser")


def chromium_path() -> str | None:
    """``CHROMIUM_PATH``, else Debian's ``chromium`` on PATH."""
    configured = os.environ.get("CHROMIUM_PATH")
    if configured:
        return configured if Path(configured).is_file() else None
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def no_browser(reason: str) -> None:
    """Skip (or, with ``REQUIRE_BROWSER=1``, fail) the browser tests for ``reason``."""
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(f"REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(f"browser tests skipped: {reason} (REQUIRE_BROWSER=1 makes this a failure)")


@dataclass
class OffHostGuard:
    """Routes every request of a browser context: the loopback server's go through, any other
    is aborted and recorded, so a page reaching for a CDN or any other host fails visibly."""

    origin: str
    refused: list[str] = field(default_factory=list)

    def __call__(self, route: Route) -> None:
        url = route.request.url
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" == self.origin:
            route.continue_()
        else:
            self.refused.append(url)
            route.abort()


def file_payload(name: str, data: bytes, mime: str = "image/jpeg") -> FilePayload:
    """A file for ``set_input_files`` / a file chooser, from bytes."""
    return {"name": name, "mimeType": mime, "buffer": data}


def drop_files(page: Page, zone_selector: str, files: list[tuple[str, bytes, str]]) -> None:
    """Drop ``files`` (name, bytes, type) on an element as a drag and drop from the desktop does:
    a ``drop`` event whose DataTransfer holds File objects."""
    encoded = [
        {"name": n, "type": t, "b64": base64.b64encode(d).decode("ascii")} for n, d, t in files
    ]
    page.evaluate(
        """([selector, files]) => {
            const transfer = new DataTransfer();
            for (const f of files) {
                const bytes = Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0));
                transfer.items.add(new File([bytes], f.name, { type: f.type }));
            }
            const zone = document.querySelector(selector);
            for (const type of ["dragenter", "dragover", "drop"]) {
                zone.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true,
                                                         cancelable: true }));
            }
        }""",
        [zone_selector, encoded],
    )


def horizontal_overflow(page: Page) -> int:
    """How many CSS pixels the page is wider than its viewport (0: no horizontal scroll)."""
    width: int = page.evaluate(
        "() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
        " - document.documentElement.clientWidth"
    )
    return width


def images_without_alt(page: Page) -> list[str]:
    """The outer HTML of every <img> whose alt is missing or blank."""
    found: list[str] = page.eval_on_selector_all(
        "img", "els => els.filter(e => !(e.getAttribute('alt') || '').trim()).map(e => e.outerHTML)"
    )
    return found


def wait_images_loaded(page: Page, selector: str, count: int) -> None:
    """Wait until ``count`` images matching ``selector`` show decoded pixels from blob URLs."""
    page.wait_for_function(
        """([selector, count]) => {
            const imgs = [...document.querySelectorAll(selector)];
            return imgs.length === count && imgs.every(
                (i) => i.src.startsWith('blob:') && i.complete && i.naturalWidth > 0);
        }""",
        arg=[selector, count],
    )


def tab_to(page: Page, selector: str, *, limit: int = 80, backwards: bool = False) -> None:
    """Press Tab (Shift+Tab) until the focused element matches ``selector``: proves it is
    reachable from the keyboard; fails after ``limit`` presses."""
    key = "Shift+Tab" if backwards else "Tab"
    for _ in range(limit):
        if page.evaluate(
            "(s) => !!document.activeElement && document.activeElement.matches(s)", selector
        ):
            return
        page.keyboard.press(key)
    raise AssertionError(f"{selector} not reached with {limit} presses of {key}")


def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# Recorded in the page: a Content-Security-Policy refusal means the page reached for something
# its own origin does not serve (the policy blocks it before any request, so the route guard
# never sees it).
_RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation',
    (e) => window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
"""


@dataclass
class PageProblems:
    """Uncaught script errors and CSP violations of one page, checked at the end of a test."""

    page: Page
    errors: list[str] = field(default_factory=list)

    @classmethod
    def watch(cls, page: Page) -> PageProblems:
        problems = cls(page)
        page.add_init_script(_RECORD_CSP_VIOLATIONS)
        page.on("pageerror", lambda exc: problems.errors.append(str(exc)))
        return problems

    def found(self) -> list[str]:
        violations: list[str] = []
        if not self.page.is_closed():
            violations = self.page.evaluate("() => window.__cspViolations || []")
        return [*self.errors, *violations]
