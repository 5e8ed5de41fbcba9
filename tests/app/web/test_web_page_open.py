"""The web page in a real headless Chromium against the real app and the real default model,
no API keys (loopback): enroll real photos into two items, search with other views, browse,
open an item, delete an image and an item, a rejected upload's detail, the status view; the
keyboard-only path; both viewport widths with screenshots. Every request the page makes goes to
the loopback server (any other host is refused and recorded)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from PIL import Image

from app.main import create_app
from app.settings import Settings
from tests.app.web.browser import (
    DESKTOP,
    PHONE,
    OffHostGuard,
    PageProblems,
    drop_files,
    file_payload,
    horizontal_overflow,
    images_without_alt,
    screenshot,
    tab_to,
    wait_images_loaded,
)
from tests.app.web.page_driver import PageDriver, ResultCard
from tests.live_server import live_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize

Views = dict[str, list[bytes]]


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, default_model_path: Path
) -> Iterator[httpx.Client]:
    settings = Settings(
        model_path=default_model_path, data_dir=tmp_path_factory.mktemp("web") / "data"
    )
    with (
        live_server(create_app(settings)) as url,
        httpx.Client(base_url=url, timeout=60) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def guard(service: httpx.Client) -> OffHostGuard:
    return OffHostGuard(str(service.base_url).rstrip("/"))


@pytest.fixture(scope="module")
def context(browser: Browser, guard: OffHostGuard) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport=DESKTOP)
    ctx.route("**/*", guard)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext, guard: OffHostGuard) -> Iterator[Page]:
    page = context.new_page()
    problems = PageProblems.watch(page)
    yield page
    found = problems.found()
    page.close()
    assert found == [], found
    assert guard.refused == [], f"requests to other hosts: {guard.refused}"


def test_the_guard_refuses_and_records_other_hosts(browser: Browser) -> None:
    # The guard itself, on a page without the web page's CSP: a script and an image from
    # another host are refused and recorded (so an empty record above means none was tried).
    guard = OffHostGuard("http://127.0.0.1:9")
    context = browser.new_context()
    context.route("**/*", guard)
    page = context.new_page()
    page.set_content(
        '<img alt="x" src="http://cdn.example/x.png"><script src="http://cdn.example/a.js">'
        "</script>"
    )
    context.close()
    assert sorted(guard.refused) == ["http://cdn.example/a.js", "http://cdn.example/x.png"]


def api_search(service: httpx.Client, views: list[bytes], **params: str | int) -> list[ResultCard]:
    files = [("images", (f"q{i}.jpg", v, "image/jpeg")) for i, v in enumerate(views)]
    r = service.post("/search", files=files, params=params)
    assert r.status_code == 200, r.text
    return [
        ResultCard(
            item_id=hit["item_id"],
            score=f"{hit['score']:.3f}",
            image_id=hit.get("best_image_id"),
            verdict=str(hit["match"]).lower() if "match" in hit else None,
        )
        for hit in r.json()["results"]
    ]


def same_as_api(service: httpx.Client, shown: list[ResultCard], expected: list[ResultCard]) -> None:
    """The page shows the API's ranking: ids, scores (3 places), verdicts, and as each card's
    photo the best-matching image where the API names one, else the item's first image."""
    assert [(c.item_id, c.score, c.verdict) for c in shown] == [
        (c.item_id, c.score, c.verdict) for c in expected
    ]
    for card, hit in zip(shown, expected, strict=True):
        image_id = hit.image_id
        if image_id is None:
            image_id = service.get(f"/items/{hit.item_id}").json()["image_ids"][0]
        assert card.image_id == image_id, card


def test_enroll_search_browse_and_delete(
    page: Page, service: httpx.Client, photo_views: Views
) -> None:
    web = PageDriver(page, str(service.base_url).rstrip("/"))
    web.open()
    cat, cup = photo_views["chelsea"], photo_views["coffee"]

    rows = web.enroll(
        "chelsea", [(f"cat-{i}.jpg", cat[i]) for i in range(3)], attributes='{"kind": "cat"}'
    )
    held = service.get("/items/chelsea").json()
    assert [r.state for r in rows] == ["added"] * 3
    assert [r.text for r in rows] == [f"added as image {i}" for i in held["image_ids"]]
    assert held["attributes"] == {"kind": "cat"}

    # Two photos chosen, one dropped, a repeat (duplicate) and a file that is no image.
    rows = web.enroll("coffee", [("cup-0.jpg", cup[0]), ("cup-1.jpg", cup[1])])
    drop_files(page, "[data-drop-for='enroll-files']", [("cup-2.jpg", cup[2], "image/jpeg")])
    page.set_input_files(
        "#enroll-files",
        [
            file_payload("cup-0-again.jpg", cup[0]),
            file_payload("notes.txt", b"not a photo", "text/plain"),
        ],
    )
    page.fill("#enroll-attributes", '{"kind": "drink"}')
    page.click("#enroll-submit")
    rows += web.wait_uploads(8)[5:]
    probe = service.post("/items/probe/images", files={"images": ("notes.txt", b"not a photo")})
    assert probe.status_code == 422
    detail = probe.json()["detail"]
    held = service.get("/items/coffee").json()
    assert [r.state for r in rows] == ["added", "added", "added", "duplicate", "rejected"]
    # Sent and answered files show a full bar, the rejected one an empty one.
    assert [r.progress for r in rows] == [1, 1, 1, 1, 0]
    assert rows[2].name == "cup-2.jpg" and held["image_count"] == 3
    assert rows[3].text == f"duplicate: the item already holds it as image {held['image_ids'][0]}"
    assert rows[4].text == f"rejected: {detail} (HTTP 422)"
    assert held["attributes"] == {"kind": "drink"}
    assert web.message() == "1 added, 1 duplicate, 1 rejected."  # the second batch
    screenshot(page, "enroll-desktop")

    # Another view of each finds its item first, as the API ranks them.
    shown = web.search([("query.jpg", cat[4])])
    assert shown[0].item_id == "chelsea"
    same_as_api(service, shown, api_search(service, [cat[4]], k=10))
    shown = web.search([("a.jpg", cup[4]), ("b.jpg", cup[5])], weights=["2", "1"])
    assert shown[0].item_id == "coffee"
    files = [("images", (f"q{i}.jpg", v, "image/jpeg")) for i, v in enumerate([cup[4], cup[5]])]
    weighted = service.post("/search", files=files, data={"weights": "2,1"}).json()["results"]
    assert [(c.item_id, c.score) for c in shown] == [
        (h["item_id"], f"{h['score']:.3f}") for h in weighted
    ]
    shown = web.search([("query.jpg", cup[4])], filters="kind:cat")
    assert [c.item_id for c in shown] == ["chelsea"]
    same_as_api(service, shown, api_search(service, [cup[4]], k=10, filter="kind:cat"))
    # A malformed filter: the search view shows the 422 problem's detail.
    web.submit_search([("query.jpg", cup[4])], filters="no-colon-here")
    page.wait_for_selector("main .message.error")
    bad = service.post(
        "/search",
        files={"images": ("q.jpg", cup[4], "image/jpeg")},
        params={"k": 10, "filter": "no-colon-here"},
    )
    assert bad.status_code == 422
    assert web.message() == f"{bad.json()['detail']} (HTTP 422)"
    # A uniform grey photo looks like nothing enrolled: every card says "No match".
    grey = io.BytesIO()
    Image.new("RGB", (320, 240), (128, 128, 128)).save(grey, format="JPEG")
    shown = web.search([("grey.jpg", grey.getvalue())])
    same_as_api(service, shown, api_search(service, [grey.getvalue()], k=10))
    assert shown and {c.verdict for c in shown} == {"false"}
    assert page.inner_text(".result .verdict").startswith("No match")

    # Browse: both items with their counts and attributes; open one, delete an image.
    web.view("#/browse")
    page.wait_for_selector(".item-row")
    listed = page.eval_on_selector_all(
        ".item-row",
        "rs => rs.map(r => [r.dataset.itemId, r.querySelector('.count').dataset.count,"
        " r.querySelector('.chips').textContent])",
    )
    assert listed == [["chelsea", "3", "kind: cat"], ["coffee", "3", "kind: drink"]]
    screenshot(page, "browse-desktop")
    assert web.open_item("chelsea") == 3
    screenshot(page, "item-desktop")
    held_ids = service.get("/items/chelsea").json()["image_ids"]
    # A thumbnail opens the original, full size (the thumbnails are at most 256 px).
    page.click(f".gallery li[data-image-id='{held_ids[0]}'] .thumb-button")
    wait_images_loaded(page, "#viewer[open] img", 1)
    natural = page.eval_on_selector("#viewer img", "i => [i.naturalWidth, i.naturalHeight]")
    assert tuple(natural) == Image.open(io.BytesIO(cat[0])).size
    page.keyboard.press("Escape")
    page.wait_for_selector("#viewer:not([open])", state="attached")
    web.delete_image(held_ids[0], confirm=False)  # cancelled: nothing deleted
    assert web.item_count() == 3
    # Attributes: a merge patch adds one key and deletes none that it does not name.
    page.fill("#item-patch", '{"colour": "tabby"}')
    page.click("#item-patch-form button[type='submit']")
    page.wait_for_selector(".attributes .chips li:nth-child(2)")
    attributes = service.get("/items/chelsea").json()["attributes"]
    assert attributes == {"kind": "cat", "colour": "tabby"}
    shown_chips = page.inner_text(".attributes .chips").splitlines()
    assert shown_chips == [f"{key}: {value}" for key, value in attributes.items()]
    assert web.item_count() == 3
    # Held out of the centroid and counted again, as the API's quarantine says.
    web.set_quarantine(held_ids[2], held_out=True)
    item = service.get("/items/chelsea").json()
    assert item["quarantined_image_ids"] == [held_ids[2]] and web.item_count() == 2
    assert page.get_attribute("#item-summary", "data-quarantined") == "1"
    assert "held out of the centroid" in page.inner_text(f"li[data-image-id='{held_ids[2]}']")
    web.set_quarantine(held_ids[2], held_out=False)
    assert service.get("/items/chelsea").json()["quarantined_image_ids"] == []
    assert web.item_count() == 3
    web.delete_image(held_ids[1])
    after = service.get("/items/chelsea").json()
    assert after["image_count"] == 2 and held_ids[1] not in after["image_ids"]
    wait_images_loaded(page, ".gallery img", 2)

    # Delete an item: confirmed, it is gone from the list and the API.
    assert web.open_item("coffee") == 3
    page.click("#item-delete")
    page.click("#confirm-ok")
    page.wait_for_function("() => location.hash === '#/browse'")
    page.wait_for_selector(".item-row")
    assert page.eval_on_selector_all(".item-row", "rs => rs.map(r => r.dataset.itemId)") == [
        "chelsea"
    ]
    assert service.get("/items/coffee").status_code == 404

    # Status: readiness and /info's counts.
    web.view("#/status")
    page.wait_for_selector("[data-ready='true']")
    page.wait_for_selector("#status-info dl")
    info = service.get("/info").json()
    shown_items = page.inner_text("#status-summary [data-field='items'] > dd")
    assert shown_items == str(info["items"]) == "1"
    assert page.inner_text("#status-summary [data-field='store_backend'] > dd") == "sqlite"
    model = f"{info['model']['model_name']} {info['model']['model_version']}"
    assert page.inner_text("#status-summary [data-field='model'] > dd") == model
    assert page.inner_text("#status-summary [data-field='images'] > dd") == str(info["images"])
    screenshot(page, "status-desktop")
    assert images_without_alt(page) == []


def test_keyboard_alone_searches_enrolls_and_deletes(
    page: Page, service: httpx.Client, photo_views: Views
) -> None:
    rocket = photo_views["rocket"]
    # A listener from the start turns Playwright's file chooser interception on before any
    # key press; set up by expect_file_chooser alone, it may race the first Space.
    page.on("filechooser", lambda _: None)
    web = PageDriver(page, str(service.base_url).rstrip("/"))
    web.open()
    keys = page.keyboard
    # Enroll two photos of a new item.
    tab_to(page, "nav a[data-view='enroll']")
    keys.press("Enter")
    tab_to(page, "#enroll-item")
    keys.type("rocket")
    tab_to(page, "#enroll-files")
    with page.expect_file_chooser() as chooser:
        keys.press("Space")
    chooser.value.set_files([file_payload(f"r{i}.jpg", rocket[i]) for i in range(2)])
    tab_to(page, "#enroll-submit")
    keys.press("Enter")
    assert [r.state for r in web.wait_uploads(2)] == ["added", "added"]
    # Search with a third view, open the first hit.
    tab_to(page, "nav a[data-view='search']", backwards=True)
    keys.press("Enter")
    tab_to(page, "#search-files")
    with page.expect_file_chooser() as chooser:
        keys.press("Space")
    chooser.value.set_files([file_payload("q.jpg", rocket[4])])
    tab_to(page, "#search-submit")
    keys.press("Enter")
    assert web.read_results()[0].item_id == "rocket"
    tab_to(page, ".result[data-rank='1'] a")
    keys.press("Enter")
    page.wait_for_selector("#item-summary[data-count='2']")
    # Delete its first image: confirm in the dialog (focus starts on Cancel).
    first = service.get("/items/rocket").json()["image_ids"][0]
    tab_to(page, f".gallery li[data-image-id='{first}'] button.danger")
    keys.press("Enter")
    page.wait_for_selector("#confirm[open]")
    assert page.evaluate("() => document.activeElement.id") == "confirm-cancel"
    keys.press("Tab")
    keys.press("Enter")
    page.wait_for_selector("#item-summary[data-count='1']")
    left = service.get("/items/rocket").json()
    assert left["image_count"] == 1 and first not in left["image_ids"]


@pytest.mark.parametrize(("width", "viewport"), [("desktop", DESKTOP), ("phone", PHONE)])
def test_every_view_fits_the_width_and_every_image_has_alt(
    context: BrowserContext,
    guard: OffHostGuard,
    service: httpx.Client,
    photo_views: Views,
    width: str,
    viewport: ViewportSize,
) -> None:
    camera = photo_views["camera"]
    long_id = "camera:" + "x" * 100  # a long id must wrap, not widen the page
    for i in range(3):
        files = {"images": (f"c{i}.jpg", camera[i], "image/jpeg")}
        attributes = json.dumps({"kind": "camera", "note": "a rather long attribute " * 4})
        r = service.post(f"/items/{long_id}/images", files=files, data={"attributes": attributes})
        assert r.status_code in (200, 201), r.text
    page = context.new_page()
    problems = PageProblems.watch(page)
    page.set_viewport_size(viewport)
    web = PageDriver(page, str(service.base_url).rstrip("/"))
    web.open()
    checks: dict[str, tuple[int, list[str]]] = {}

    def check(view: str) -> None:
        checks[view] = (horizontal_overflow(page), images_without_alt(page))
        screenshot(page, f"{view}-{width}")

    web.search([("q1.jpg", camera[4]), ("q2.jpg", camera[5])])
    check("search")
    web.enroll(long_id, [("c3.jpg", camera[3]), ("bad.txt", b"no")], mime="image/jpeg")
    check("enroll")
    web.view("#/browse")
    page.wait_for_selector(".item-row")
    check("browse")
    web.open_item(long_id)
    page.click("#item-similar")
    page.wait_for_selector("[aria-label='similar items'] h2")
    similar = web.read_results()
    r = service.get(f"/items/{long_id}/neighbours", params={"k": 10})
    assert [(c.item_id, c.score) for c in similar] == [
        (hit["item_id"], f"{hit['score']:.3f}") for hit in r.json()["results"]
    ]
    assert similar and long_id not in {c.item_id for c in similar}
    check("item")
    web.view("#/status")
    page.wait_for_selector("#status-info dl")
    check("status")
    assert problems.found() == []
    page.close()
    assert checks == {view: (0, []) for view in checks}, checks
    assert guard.refused == []


def test_browse_pages_and_filters_as_the_api_lists(
    page: Page, service: httpx.Client, photo_views: Views
) -> None:
    photos = ["astronaut", "coins", "china", "flower", "immunohistochemistry", "stereo_motorcycle"]
    for i, name in enumerate(photos):
        for j in range(2):  # two items per photo, one view each: more than a page of 10
            files = {"images": (f"{name}.jpg", photo_views[name][j], "image/jpeg")}
            data = {"attributes": json.dumps({"page_test": "yes", "n": i * 2 + j})}
            r = service.post(f"/items/page-{name}-{j}/images", files=files, data=data)
            assert r.status_code == 201, r.text
    pages: list[list[str]] = []
    params: dict[str, str | int] = {"limit": 10}
    while True:
        body = service.get("/items", params=params).json()
        pages.append([item["item_id"] for item in body["items"]])
        if not body["next_cursor"]:
            break
        params["cursor"] = body["next_cursor"]
    assert len(pages) >= 2
    web = PageDriver(page, str(service.base_url).rstrip("/"))
    web.open()
    web.view("#/browse")

    def listed() -> list[str]:
        # The list is aria-busy from the click that asks for a page until it is shown.
        page.wait_for_selector(".item-list:not([aria-busy])", state="attached")
        ids: list[str] = page.eval_on_selector_all(
            ".item-row", "rs => rs.map(r => r.dataset.itemId)"
        )
        return ids

    page.select_option("#browse-size", "10")
    page.click("#browse-form button[type='submit']")
    assert listed() == pages[0]
    assert page.is_disabled("#browse-previous")
    for number, expected in enumerate(pages[1:], start=2):
        page.click("#browse-next")
        page.wait_for_function(
            "(n) => document.querySelector('.page-label').textContent === `Page ${n}`", arg=number
        )
        assert listed() == expected
    assert page.is_disabled("#browse-next")
    page.click("#browse-previous")
    page.wait_for_function(
        "(n) => document.querySelector('.page-label').textContent === `Page ${n}`",
        arg=len(pages) - 1,
    )
    assert listed() == pages[-2]
    # A filter lists the matching items only, as GET /items?filter= does.
    page.fill("#browse-filters", "page_test:yes\nn:3")
    page.click("#browse-form button[type='submit']")
    page.wait_for_function("() => document.querySelector('.page-label').textContent === 'Page 1'")
    filtered = service.get("/items", params=[("filter", "page_test:yes"), ("filter", "n:3")])
    assert listed() == [item["item_id"] for item in filtered.json()["items"]] == ["page-coins-1"]
