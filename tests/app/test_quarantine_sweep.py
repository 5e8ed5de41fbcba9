"""The quality gate over the whole gallery (tiny real model, real photos, real HTTP): a
mislabel enrolled as its item's first image is never judged at enrollment; the sweep flags
what a brute force over the store's embeddings flags, a dry run writes nothing, and
``quarantine=true`` holds the flagged images out of their items' centroids."""

from __future__ import annotations

from tests.app.conftest import ServiceFactory
from tests.app.test_image_quarantine import assert_centroid_is_of_counted_images
from tests.app.test_suspect_images_route import ITEMS, MARGIN, files, oracle, store_of


def test_a_sweep_finds_what_enrollment_could_not_and_quarantines_it(
    service_factory: ServiceFactory, photo_views: dict[str, list[bytes]]
) -> None:
    with service_factory(suspect_margin=MARGIN) as client:
        # The stray first: a one-image item has nothing to be compared with.
        stray = client.post("/items/astronaut/images", files=files([photo_views["chelsea"][4]]))
        assert stray.status_code == 201 and stray.json()["suspects"] == []
        stray_id = stray.json()["image_ids"][0]
        for name in ITEMS:
            for view in photo_views[name][:3]:  # one image per request, as a bulk upload
                r = client.post(f"/items/{name}/images", files=files([view]))
                assert r.status_code == 201, r.text
        store = store_of(client)
        expected = {
            (item, image)
            for item in ITEMS
            for image, (_, _, _, closer, outside) in oracle(store, item).items()
            if closer or outside
        }
        assert ("astronaut", stray_id) in expected
        version = store.last_version()

        dry = client.post("/admin/quarantine-suspects")
        assert dry.status_code == 200, dry.text
        body = dry.json()
        assert {(s["item_id"], s["image_id"]) for s in body["suspects"]} == expected
        assert body["applied"] is False and body["quarantined"] == 0
        assert (body["items"], body["images"]) == (len(ITEMS), 3 * len(ITEMS) + 1)
        assert store.last_version() == version  # a dry run writes nothing

        applied = client.post("/admin/quarantine-suspects", params={"quarantine": "true"}).json()
        assert applied["applied"] and applied["flagged"] == len(expected)
        assert applied["quarantined"] + applied["kept_last_counted"] == len(expected)
        held = {
            (item, image)
            for item in ITEMS
            for image in client.get(f"/items/{item}").json()["quarantined_image_ids"]
        }
        assert ("astronaut", stray_id) in held and held <= expected
        assert len(held) == applied["quarantined"]
        for item in ITEMS:
            assert_centroid_is_of_counted_images(client, item)

        # A genuine view quarantined by hand: a sweep with release counts it again, while
        # the stray, judged with itself added to its item, stays held out.
        genuine = client.get("/items/coffee").json()["image_ids"][0]
        r = client.patch(f"/items/coffee/images/{genuine}", json={"quarantined": True})
        assert r.status_code == 200, r.text
        dry = client.post("/admin/quarantine-suspects", params={"release": "true"}).json()
        assert ("coffee", genuine) not in {(s["item_id"], s["image_id"]) for s in dry["suspects"]}
        assert dry["unflagged_quarantined"] >= 1 and dry["released"] == 0
        swept = client.post(
            "/admin/quarantine-suspects", params={"quarantine": "true", "release": "true"}
        ).json()
        assert swept["released"] == dry["unflagged_quarantined"]
        assert genuine not in client.get("/items/coffee").json()["quarantined_image_ids"]
        assert stray_id in client.get("/items/astronaut").json()["quarantined_image_ids"]
        for item in ITEMS:
            assert_centroid_is_of_counted_images(client, item)
