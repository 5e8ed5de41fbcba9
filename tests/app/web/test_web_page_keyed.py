"""The web page in a real headless Chromium against the real app and the real default model
with API keys required: the page and its assets load without a key, the API's refusals are
shown as their problem detail, and once a key is entered (kept in sessionStorage, sent as
``Authorization: Bearer``) the page enrolls, searches, shows photos through blob URLs and
deletes. An ``admin`` key runs the maintenance routes from the Admin view (compaction,
backup, index digest); a key without that scope sees their 403 detail. Any request to a host
other than the loopback server is refused and recorded."""

from __future__ import annotations

import hashlib
import json
import os
import time
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
    horizontal_overflow,
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
ADMIN_KEY, ADMIN = make_key("operator", [Scope.READ, Scope.ADMIN])
KEY_STORAGE = "centroid-retrieval.api-key"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("web-keyed") / "data"


@pytest.fixture(scope="module")
def service(data_dir: Path, default_model_path: Path) -> Iterator[httpx.Client]:
    settings = Settings(
        model_path=default_model_path,
        data_dir=data_dir,
        api_keys="\n".join(k.hash_line() for k in (READ_WRITE, READ_ONLY, ADMIN)),
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


def _plant_orphan(data_dir: Path, content: bytes, age_s: float) -> Path:
    """A blob no image references, as a crash between blob write and store commit leaves one,
    last touched ``age_s`` ago."""
    digest = hashlib.sha256(content).hexdigest()
    path = data_dir / "blobs" / digest[:2] / digest[2:4] / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def _blob_files(data_dir: Path) -> int:
    """Originals on disk, counted from the layout (``ab/cd/<sha256 hex>``), thumbnails apart."""
    hexdigits = set("0123456789abcdef")
    return sum(
        1
        for p in (data_dir / "blobs").glob("??/??/*")
        if len(p.name) == 64 and set(p.name) <= hexdigits and p.is_file()
    )


def _sqlite_bytes(data_dir: Path) -> int:
    """The store file and its WAL, as the route counts SQLite's bytes."""
    files = [data_dir / "store.sqlite3", data_dir / "store.sqlite3-wal"]
    return sum(f.stat().st_size for f in files if f.exists())


def _figures(page: Page, selector: str) -> dict[str, str]:
    """The figures a result panel shows: its ``data-field`` rows' text."""
    page.wait_for_selector(f"{selector} dl")
    rows: dict[str, str] = page.eval_on_selector_all(
        f"{selector} [data-field]",
        "rs => Object.fromEntries(rs.map(r => [r.dataset.field, r.querySelector('dd').innerText]))",
    )
    return rows


def test_an_admin_key_compacts_backs_up_and_checks_the_index_from_the_admin_view(
    page: tuple[Page, OffHostGuard],
    service: httpx.Client,
    data_dir: Path,
    photo_views: dict[str, list[bytes]],
) -> None:
    browser_page, _ = page
    base = str(service.base_url).rstrip("/")
    web = PageDriver(browser_page, base)
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    for i in range(2):
        files = {"images": (f"a{i}.jpg", photo_views["camera"][i], "image/jpeg")}
        assert service.post("/items/admin-camera/images", files=files).status_code in (200, 201)
    # Unreferenced blobs 2 h, 10 min and 10 s old: a grace of 120 s removes the first two (the
    # route's default, 3600 s, would keep the second) and keeps the third.
    old = _plant_orphan(data_dir, b"orphan, two hours old", 7200)
    older_than_grace = _plant_orphan(data_dir, b"orphan, ten minutes old", 600)
    recent = _plant_orphan(data_dir, b"orphan, ten seconds old", 10)

    web.open()
    web.use_key(ADMIN_KEY)
    # From the keyboard: the Admin link, the grace period, the button, then the confirmation
    # (focus starts on Cancel).
    keys = browser_page.keyboard
    tab_to(browser_page, "nav a[data-view='admin']")
    keys.press("Enter")
    browser_page.wait_for_selector("#admin-compact-form")
    tab_to(browser_page, "#admin-grace")
    keys.press("Control+A")
    keys.type("120")
    tab_to(browser_page, "#admin-compact-submit")
    keys.press("Enter")
    browser_page.wait_for_selector("#confirm[open]")
    assert browser_page.evaluate("() => document.activeElement.id") == "confirm-cancel"
    with browser_page.expect_response(lambda r: "/admin/compact" in r.url) as compacted:
        keys.press("Tab")
        keys.press("Enter")
    assert compacted.value.request.url == f"{base}/admin/compact?grace_s=120"
    answer = compacted.value.json()
    shown = _figures(browser_page, "#admin-compact-result")
    blobs = answer["blobs"]
    assert shown == {
        "backend": "sqlite",
        "store_bytes": f"{answer['store_bytes_before']} → {answer['store_bytes_after']}",
        "blob_files": f"{blobs['files_before']} → {blobs['files_after']}",
        "blob_dirs": f"{blobs['dirs_before']} → {blobs['dirs_after']}",
        "orphans_removed": str(blobs["orphans_removed"]),
        "thumbnails_removed": str(blobs["thumbnails_removed"]),
        "temporary_removed": str(blobs["temporary_removed"]),
        "kept_recent": str(blobs["kept_recent"]),
        "held": "no",
        "seconds": str(answer["seconds"]),
    }
    # Against the disk: the two old orphans are gone, the recent one stays, the counts after
    # are what is there now; the photos enrolled are all still there.
    assert (old.exists(), older_than_grace.exists(), recent.exists()) == (False, False, True)
    assert blobs["orphans_removed"] >= 2 and blobs["kept_recent"] >= 1
    assert blobs["files_before"] - blobs["files_after"] == blobs["orphans_removed"]
    assert blobs["files_after"] == _blob_files(data_dir)
    assert answer["store_bytes_after"] == _sqlite_bytes(data_dir)
    for image_id in service.get("/items/admin-camera").json()["image_ids"]:
        assert service.get(f"/items/admin-camera/images/{image_id}").status_code == 200

    # A backup named from the page; its manifest on disk says what the page shows.
    tab_to(browser_page, "#admin-backup-name")
    keys.type("web-backup-1")
    with browser_page.expect_response(lambda r: "/admin/backup" in r.url) as backed_up:
        keys.press("Enter")
    assert backed_up.value.request.url == f"{base}/admin/backup?out=web-backup-1"
    backup = backed_up.value.json()
    shown = _figures(browser_page, "#admin-backup-result")
    manifest = json.loads((data_dir / "backups" / "web-backup-1" / "manifest.json").read_text())
    info = service.get("/info").json()
    assert shown["out"] == backup["out"] == "web-backup-1"
    assert int(shown["items"]) == backup["items"] == manifest["items"] == info["items"]
    assert int(shown["images"]) == backup["images"] == manifest["images"] == info["images"]
    assert int(shown["blobs_copied"]) == backup["blobs_copied"] == manifest["blobs_copied"]
    assert shown["created_at"] == backup["created_at"] == manifest["created_at"]
    assert shown["missing_blobs"] == "0" and shown["blobs_kept"] == "yes"
    # The same name again: the route's 409, its detail shown and the old result cleared.
    browser_page.click("#admin-backup-submit")
    browser_page.wait_for_selector("#admin-backup-message.error")
    exists = service.post("/admin/backup", params={"out": "web-backup-1"}, headers=admin)
    assert exists.status_code == 409
    detail = browser_page.inner_text("#admin-backup-message")
    assert detail == f"{exists.json()['detail']} (HTTP 409)"
    assert browser_page.locator("#admin-backup-result dl").count() == 0

    # The digest: what the page shows is the route's answer, and the counts are the store's.
    browser_page.click("#admin-digest-submit")
    shown = _figures(browser_page, "#admin-digest-result")
    digest = service.get("/admin/index-digest", headers=admin).json()
    assert digest["agrees"] is True
    assert browser_page.get_attribute("#admin-digest-result .verdict", "data-agrees") == "true"
    assert shown == {
        "index_items": str(info["items"]),
        "store_items": str(info["items"]),
        "index_digest": digest["index_digest"],
        "store_digest": digest["store_digest"],
    }
    # A second compaction by the API starts where the page's ended.
    again = service.post("/admin/compact", params={"grace_s": 120}, headers=admin).json()
    assert again["blobs"]["files_before"] == blobs["files_after"]
    assert again["store_bytes_before"] == answer["store_bytes_after"]

    # No name: the route names it backup-<UTC time>, and no `out` is sent.
    browser_page.fill("#admin-backup-name", "")
    with browser_page.expect_response(lambda r: "/admin/backup" in r.url) as backed_up:
        browser_page.click("#admin-backup-submit")
    assert backed_up.value.request.url == f"{base}/admin/backup"
    named = backed_up.value.json()["out"]
    assert _figures(browser_page, "#admin-backup-result")["out"] == named
    assert named.startswith("backup-") and (data_dir / "backups" / named / "manifest.json").exists()
    assert browser_page.is_hidden("#admin-backup-message")
    screenshot(browser_page, "admin-desktop")
    browser_page.set_viewport_size(PHONE)
    assert horizontal_overflow(browser_page) == 0
    screenshot(browser_page, "admin-phone")


def test_a_key_without_the_admin_scope_sees_each_maintenance_routes_403(
    page: tuple[Page, OffHostGuard], service: httpx.Client, data_dir: Path
) -> None:
    browser_page, _ = page
    web = PageDriver(browser_page, str(service.base_url).rstrip("/"))
    sent: list[str] = []
    browser_page.on("request", lambda r: sent.append(r.url) if "/admin/" in r.url else None)
    web.open()
    web.use_key(READ_WRITE_KEY)
    web.view("#/admin")
    # The curator's key (read, write): each route's own 403 detail.
    details = {
        "compact": service.post("/admin/compact").json()["detail"],
        "backup": service.post("/admin/backup", params={"out": "refused"}).json()["detail"],
        "digest": service.get("/admin/index-digest").json()["detail"],
    }
    # Cancelling the compaction's confirmation sends nothing.
    browser_page.click("#admin-compact-submit")
    browser_page.click("#confirm-cancel")
    browser_page.wait_for_selector("#confirm:not([open])", state="attached")
    assert sent == [] and browser_page.is_enabled("#admin-compact-submit")
    browser_page.click("#admin-compact-submit")
    browser_page.click("#confirm-ok")
    browser_page.fill("#admin-backup-name", "refused")
    browser_page.click("#admin-backup-submit")
    browser_page.click("#admin-digest-submit")
    for action, detail in details.items():
        message = f"#admin-{action}-message.error"
        browser_page.wait_for_selector(message)
        assert browser_page.inner_text(message) == f"{detail} (HTTP 403)", action
        assert browser_page.locator(f"#admin-{action}-result > *").count() == 0
    assert len(sent) == 3
    assert not (data_dir / "backups" / "refused").exists()
