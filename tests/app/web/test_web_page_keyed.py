"""The web page in a real headless Chromium against the real app and the real default model
with API keys required: the page and its assets load without a key, the API's refusals are
shown as their problem detail, and once a key is entered (kept in sessionStorage, sent as
``Authorization: Bearer``) the page enrolls, searches, shows photos through blob URLs and
deletes. Any request to a host other than the loopback server is refused and recorded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from app.api_keys import Scope, make_key
from app.main import create_app
from app.settings import Settings
from tests.app.web.browser import (
    DESKTOP,
    PHONE,
    OffHostGuard,
    PageProblems,
    drop_files,
    screenshot,
    tab_to,
    wait_images_loaded,
)
from tests.app.web.page_driver import PageDriver
from tests.live_server import live_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Request

READ_WRITE_KEY, READ_WRITE = make_key("curator", [Scope.READ, Scope.WRITE])
READ_KEY, READ_ONLY = make_key("viewer", [Scope.READ])
KEY_STORAGE = "centroid-retrieval.api-key"


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, default_model_path: Path
) -> Iterator[httpx.Client]:
    settings = Settings(
        model_path=default_model_path,
        data_dir=tmp_path_factory.mktemp("web-keyed") / "data",
        api_keys=f"{READ_WRITE.hash_line()}\n{READ_ONLY.hash_line()}",
    )
    with (
        live_server(create_app(settings)) as url,
        httpx.Client(
            base_url=url, timeout=60, headers={"Authorization": f"Bearer {READ_WRITE_KEY}"}
        ) as client,
    ):
        yield client


@pytest.fixture
def page(browser: Browser, service: httpx.Client) -> Iterator[tuple[Page, OffHostGuard]]:
    guard = OffHostGuard(str(service.base_url).rstrip("/"))
    context = browser.new_context(viewport=DESKTOP)
    context.route("**/*", guard)
    page = context.new_page()
    problems = PageProblems.watch(page)
    yield page, guard
    found = problems.found()
    context.close()
    assert found == [], found
    assert guard.refused == [], f"requests to other hosts: {guard.refused}"


def test_with_keys_required_the_page_asks_for_one_and_works_with_it(
    page: tuple[Page, OffHostGuard], service: httpx.Client, photo_views: dict[str, list[bytes]]
) -> None:
    browser_page, _ = page
    base = str(service.base_url).rstrip("/")
    web = PageDriver(browser_page, base)
    sent: list[Request] = []
    browser_page.on("request", lambda r: sent.append(r) if r.url.startswith(base) else None)

    # No key: the page and its assets load (open), the API refusal is shown as its detail.
    with httpx.Client(base_url=base) as anonymous:
        no_key = anonymous.get("/info").json()["detail"]
        bad_key = anonymous.get("/info", headers={"Authorization": "Bearer cr_x_y"}).json()
    web.open()
    assert browser_page.is_visible("#key-panel[open]") is False
    web.view("#/status")
    browser_page.wait_for_selector("[data-ready='true']")  # /readyz is open
    browser_page.wait_for_selector("main .message.error")
    assert web.message() == f"{no_key} (HTTP 401)"
    assert browser_page.is_visible("#key-input")  # the panel opened to ask for one
    screenshot(browser_page, "key-needed-desktop")

    web.use_key("cr_x_y")
    browser_page.wait_for_selector("main .message.error")
    assert web.message() == f"{bad_key['detail']} (HTTP 401)"

    # A read-only key: the upload is rejected with the scope problem's detail.
    web.use_key(READ_KEY)
    rocket, coins = photo_views["rocket"], photo_views["coins"]
    rows = web.enroll("rocket", [("r0.jpg", rocket[0])])
    files = {"images": ("r0.jpg", rocket[0], "image/jpeg")}
    scope_detail = service.post(
        "/items/rocket/images", files=files, headers={"Authorization": f"Bearer {READ_KEY}"}
    ).json()["detail"]
    assert [(r.state, r.text) for r in rows] == [
        ("rejected", f"rejected: {scope_detail} (HTTP 403)")
    ]

    # The curator's key: enroll two items, search, open, delete; photos fetched with the key.
    # This one from the keyboard: open the panel, type the key, Enter.
    tab_to(browser_page, "#key-summary")
    browser_page.keyboard.press("Enter")
    tab_to(browser_page, "#key-input")
    browser_page.keyboard.type(READ_WRITE_KEY)
    browser_page.keyboard.press("Enter")
    browser_page.wait_for_function("() => !document.getElementById('key-panel').open")
    stored = browser_page.evaluate(
        "(k) => [sessionStorage.getItem(k), localStorage.getItem(k)]", KEY_STORAGE
    )
    assert stored == [READ_WRITE_KEY, None]
    assert browser_page.inner_text("#key-summary") == "API key: set for this session"
    rows = web.enroll("rocket", [(f"r{i}.jpg", rocket[i]) for i in range(3)])
    rows += web.enroll("coins", [(f"c{i}.jpg", coins[i]) for i in range(2)])
    assert [r.state for r in rows] == ["added"] * 5
    shown = web.search([("q.jpg", coins[4])])
    assert shown[0].item_id == "coins"
    # The same query dropped on the search view instead of chosen.
    web.view("#/enroll")
    web.view("#/search")
    drop_files(browser_page, "[data-drop-for='search-files']", [("d.jpg", coins[4], "image/jpeg")])
    browser_page.click("#search-submit")
    assert web.read_results() == shown
    assert {c.item_id for c in shown} == {"coins", "rocket"}
    assert web.open_item("rocket") == 3
    screenshot(browser_page, "item-keyed-desktop")
    doomed = service.get("/items/rocket").json()["image_ids"][2]
    web.delete_image(doomed)
    assert service.get("/items/rocket").json()["image_count"] == 2
    wait_images_loaded(browser_page, ".gallery img", 2)

    # Every API request carried the key as a bearer token (images too: blob URLs, not src).
    api = [r for r in sent if "/web/" not in r.url and r.url.rstrip("/") != base]
    images = [r for r in api if "/images/" in r.url and r.method == "GET"]
    assert len(images) >= 3
    assert all(r.headers.get("authorization") == f"Bearer {READ_WRITE_KEY}" for r in images)
    assert browser_page.eval_on_selector_all(
        ".gallery img", "is => is.every(i => i.src.startsWith('blob:'))"
    )
    # Only what ran before any key was entered went without one: /info (the limits, the
    # status view, refused) and the open /readyz.
    unkeyed = {r.url.removeprefix(base) for r in api if "authorization" not in r.headers}
    assert unkeyed == {"/info", "/readyz"}

    # Reloading keeps the key for the session; the phone width fits too.
    browser_page.reload()
    browser_page.wait_for_selector("body[data-ready='true']")
    assert browser_page.inner_text("#key-summary") == "API key: set for this session"
    browser_page.set_viewport_size(PHONE)
    web.view("#/status")
    browser_page.wait_for_selector("#status-info dl")
    assert browser_page.inner_text("#status-summary [data-field='items'] > dd") == "2"
