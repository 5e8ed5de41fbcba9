"""The web page driven as a user does (fill, choose files, click), one method per task, with
the answers read back from the page. Tests compare them with the API's own answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tests.app.web.browser import file_payload

if TYPE_CHECKING:
    from playwright.sync_api import Page

# Long enough for the real model on a loaded 2-core machine.
TIMEOUT_MS = 30_000


@dataclass(frozen=True)
class UploadRow:
    name: str
    state: str  # added | duplicate | rejected
    text: str
    progress: float  # the row's upload progress bar, 0..1 (from XMLHttpRequest.upload)


@dataclass(frozen=True)
class ResultCard:
    item_id: str
    score: str
    image_id: str | None  # the thumbnail's image id, once shown
    verdict: str | None


class PageDriver:
    def __init__(self, page: Page, base_url: str) -> None:
        self.page = page
        self.base_url = base_url
        page.set_default_timeout(TIMEOUT_MS)

    def open(self) -> None:
        self.page.goto(self.base_url + "/")
        self.page.wait_for_selector("body[data-ready='true']")

    def view(self, hash_path: str) -> None:
        self.page.evaluate("(h) => { location.hash = h; }", hash_path)
        self.page.wait_for_function("(h) => location.hash === h", arg=hash_path)
        self.page.wait_for_selector("main h1")

    def use_key(self, key: str) -> None:
        page = self.page
        if not page.is_visible("#key-input"):
            page.click("#key-summary")
        page.fill("#key-input", key)
        page.click("#key-form button[type='submit']")
        page.wait_for_function("() => !document.getElementById('key-panel').open")

    def enroll(
        self,
        item_id: str,
        files: list[tuple[str, bytes]],
        *,
        attributes: str = "",
        mime: str = "image/jpeg",
    ) -> list[UploadRow]:
        """Upload ``files`` (name, bytes) to ``item_id`` through the Enroll view."""
        page = self.page
        self.view("#/enroll")
        before = page.locator(".upload").count()
        page.fill("#enroll-item", item_id)
        page.fill("#enroll-attributes", attributes)
        page.set_input_files("#enroll-files", [file_payload(n, d, mime) for n, d in files])
        page.click("#enroll-submit")
        return self.wait_uploads(before + len(files))[before:]

    def wait_uploads(self, count: int) -> list[UploadRow]:
        page = self.page
        page.wait_for_function(
            """(n) => {
                const rows = [...document.querySelectorAll('.upload')];
                return rows.length === n && rows.every(
                    (r) => ['added', 'duplicate', 'rejected'].includes(r.dataset.state));
            }""",
            arg=count,
        )
        rows: list[dict[str, Any]] = page.eval_on_selector_all(
            ".upload",
            "rs => rs.map(r => ({name: r.dataset.file, state: r.dataset.state,"
            " text: r.querySelector('.upload-status').textContent,"
            " progress: r.querySelector('progress').value}))",
        )
        return [UploadRow(**r) for r in rows]

    def search(
        self,
        files: list[tuple[str, bytes]],
        *,
        k: int = 10,
        filters: str = "",
        weights: list[str] | None = None,
    ) -> list[ResultCard]:
        self.submit_search(files, k=k, filters=filters, weights=weights)
        return self.read_results()

    def submit_search(
        self,
        files: list[tuple[str, bytes]],
        *,
        k: int = 10,
        filters: str = "",
        weights: list[str] | None = None,
    ) -> None:
        page = self.page
        self.view("#/search")
        page.set_input_files("#search-files", [file_payload(n, d) for n, d in files])
        if weights is not None:
            for i, weight in enumerate(weights):
                page.fill(f".query:nth-child({i + 1}) .weight input", weight)
        page.fill("#search-k", str(k))
        page.fill("#search-filters", filters)
        page.click("#search-submit")

    def read_results(self) -> list[ResultCard]:
        page = self.page
        page.wait_for_selector("section.results-box h2, section.results-box .message")
        # Every card's thumbnail decoded, or failed (its alt then says why), or the card says
        # it has none.
        page.wait_for_function(
            """() => [...document.querySelectorAll('.result')].every((card) => {
                const img = card.querySelector('img');
                if (!img) return card.querySelector('.caption').textContent === 'no image';
                return img.classList.contains('failed')
                    || (img.complete && img.src.startsWith('blob:') && img.naturalWidth > 0);
            })"""
        )
        failed = page.eval_on_selector_all(".result img.failed", "is => is.map(i => i.alt)")
        assert failed == [], failed
        cards: list[dict[str, Any]] = page.eval_on_selector_all(
            ".result",
            """cs => cs.map(c => ({
                item_id: c.dataset.itemId,
                score: c.querySelector('[data-figure="score"] dd').textContent,
                image_id: c.querySelector('img') ? c.querySelector('img').dataset.imageId : null,
                verdict: c.querySelector('.verdict') ? c.querySelector('.verdict').dataset.match
                                                     : null}))""",
        )
        return [ResultCard(**c) for c in cards]

    def item_count(self) -> int:
        text = self.page.get_attribute("#item-summary", "data-count")
        assert text is not None
        return int(text)

    def open_item(self, item_id: str) -> int:
        """The item's page with every thumbnail shown; returns its image count."""
        page = self.page
        self.view("#/browse")
        page.click(f".item-row[data-item-id='{item_id}'] a")
        page.wait_for_selector("#item-summary[data-count]")
        count = self.item_count()
        # Every image shown, quarantined ones included (the count is of the counted ones).
        page.wait_for_function(
            "() => [...document.querySelectorAll('.gallery img')].filter("
            "(i) => i.complete && i.src.startsWith('blob:') && i.naturalWidth > 0).length"
            " === document.querySelectorAll('.gallery li').length"
        )
        return count

    def set_quarantine(self, image_id: str, held_out: bool) -> None:
        """Hold the image out of the centroid, or count it again, by its card's button."""
        page = self.page
        card = f".gallery li[data-image-id='{image_id}']"
        page.click(f"{card} button.quarantine")
        page.wait_for_selector(f"{card}[data-quarantined='{str(held_out).lower()}']")

    def delete_image(self, image_id: str, *, confirm: bool = True) -> None:
        page = self.page
        before = self.item_count()
        page.click(f".gallery li[data-image-id='{image_id}'] button.danger")
        page.wait_for_selector("#confirm[open]")
        page.click("#confirm-ok" if confirm else "#confirm-cancel")
        page.wait_for_selector("#confirm:not([open])", state="attached")
        if confirm:
            page.wait_for_function(
                "(n) => document.getElementById('item-summary').dataset.count === String(n)",
                arg=before - 1,
            )

    def message(self) -> str:
        return self.page.locator("main .message:not([hidden])").first.inner_text()
