"""FolderEnrollment against a real service: per-file outcomes, batching, and resuming.

The real app with the real default model under a real uvicorn, at most two files per request;
folders of real photo views (scikit-image's and scikit-learn's sample photos).
"""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest

from client.enroll_folder import EmptyFolderError, FolderEnrollment, FolderSummary
from client.enroll_state import DEFAULT_STATE_NAME, EnrollState
from client.file_outcome import Outcome
from client.item_ids import item_id_for
from tests.app.metrics_text import metric_value, wait_for_metric
from tests.client.enroll_service import (
    ENROLL_ROUTE,
    item_image_counts,
    outcomes,
    write_files,
)

Views = dict[str, list[bytes]]


def enroll(
    client: httpx.Client, root: Path, prefix: str
) -> tuple[FolderSummary, dict[str, str], str]:
    out, err = io.StringIO(), io.StringIO()
    state = EnrollState.load(root / DEFAULT_STATE_NAME, str(client.base_url))
    summary = FolderEnrollment(client, root, state, out, err).run(prefix)
    return summary, outcomes(out.getvalue()), err.getvalue()


def accepted_uploads(client: httpx.Client, expected: float | None = None) -> float:
    """The service's count of accepted enrollment requests (once it is ``expected``, if given)."""
    labels = {"method": "POST", "route": ENROLL_ROUTE, "status": "201"}
    if expected is None:
        return metric_value(client, "http_requests_total", **labels)
    return wait_for_metric(client, "http_requests_total", expected, 2.0, **labels)


def test_a_rerun_after_a_partial_run_sends_only_the_rest(
    service: httpx.Client, photo_views: Views, tmp_path: Path
) -> None:
    root, prefix = tmp_path / "photos", "partial:"
    cat = "chelsea the cat"  # not a valid item id: mapped
    first = {
        "astronaut/0.jpg": photo_views["astronaut"][0],
        "astronaut/1.jpg": photo_views["astronaut"][1],
        f"{cat}/0.jpg": photo_views["chelsea"][0],
    }
    write_files(root, first)
    summary, seen, _ = enroll(service, root, prefix)
    assert seen == dict.fromkeys(first, "enrolled")
    assert summary.ok and summary.requests == 2 and summary.items == 2

    rest = {
        "astronaut/2.jpg": photo_views["astronaut"][2],
        "astronaut/3.jpg": photo_views["astronaut"][3],
        "astronaut/4.jpg": photo_views["astronaut"][4],
        f"{cat}/1.jpg": photo_views["chelsea"][1],
        "coffee/0.jpg": photo_views["coffee"][0],
    }
    write_files(root, rest)
    before = accepted_uploads(service)
    summary, seen, _ = enroll(service, root, prefix)
    assert seen == {**dict.fromkeys(first, "skipped-already"), **dict.fromkeys(rest, "enrolled")}
    # astronaut's three new files in two requests, one each for the other items.
    assert summary.requests == 4 and summary.ok
    assert summary.outcomes == {Outcome.ALREADY: 3, Outcome.ENROLLED: 5}
    # The service's own count: nothing on record was sent again.
    assert accepted_uploads(service, expected=before + 4) == before + 4
    assert item_image_counts(service, prefix) == {
        f"{prefix}astronaut": 5,
        item_id_for(cat, prefix): 2,
        f"{prefix}coffee": 1,
    }


def test_deleted_images_are_sent_again_and_no_state_means_duplicates(
    service: httpx.Client, photo_views: Views, tmp_path: Path
) -> None:
    root, prefix = tmp_path / "photos", "deleted:"
    files = {f"rocket/{i}.jpg": photo_views["rocket"][i] for i in range(3)}
    write_files(root, files)
    enroll(service, root, prefix)
    item = service.get(f"/items/{prefix}rocket").json()
    assert service.delete(f"/items/{prefix}rocket/images/{item['image_ids'][1]}").status_code == 204

    # The record of rocket/1.jpg names an image the item no longer holds: it is sent again.
    _, seen, _ = enroll(service, root, prefix)
    assert seen == {
        "rocket/0.jpg": "skipped-already",
        "rocket/1.jpg": "enrolled",
        "rocket/2.jpg": "skipped-already",
    }
    # Without its state file a run sends everything; the service keeps one copy per content.
    (root / DEFAULT_STATE_NAME).unlink()
    summary, seen, _ = enroll(service, root, prefix)
    assert seen == dict.fromkeys(files, "duplicate") and summary.ok
    assert item_image_counts(service, prefix) == {f"{prefix}rocket": 3}


def test_rejected_files_are_reported_and_retried_the_rest_enrolled(
    service: httpx.Client, photo_views: Views, tmp_path: Path
) -> None:
    root, prefix = tmp_path / "photos", "rejects:"
    photo = photo_views["camera"][0]
    write_files(
        root,
        {
            "camera/0.jpg": photo,
            "camera/broken.jpg": b"this is not a JPEG file at all",
            "camera/copy.jpg": photo,  # same bytes as 0.jpg
            # Not enrolled, not reported: not image-named, or dot-named metadata.
            "camera/notes.txt": b"ignored",
            "camera/._0.jpg": b"\x00\x05\x16\x07 AppleDouble",
            ".thumbnails/0.jpg": photo,
            # Not in an item folder.
            "loose.jpg": photo,
        },
    )
    summary, seen, err = enroll(service, root, prefix)
    assert seen == {
        "camera/0.jpg": "enrolled",
        "camera/broken.jpg": "rejected",
        "camera/copy.jpg": "duplicate",
    }
    assert not summary.ok
    # [0, broken] refused whole, then 0 and broken one by one; then [copy].
    assert summary.requests == 4
    assert "ignored 1 image file(s) directly in" in err
    assert item_image_counts(service, prefix) == {f"{prefix}camera": 1}

    # Rejected files are not on record: a re-run tries them again, and only them.
    summary, seen, _ = enroll(service, root, prefix)
    assert seen == {
        "camera/0.jpg": "skipped-already",
        "camera/broken.jpg": "rejected",
        "camera/copy.jpg": "skipped-already",
    }
    assert summary.requests == 1


def test_a_folder_without_item_folders_is_an_error(service: httpx.Client, tmp_path: Path) -> None:
    write_files(tmp_path, {"loose.jpg": b"x", "empty/notes.txt": b"x"})
    with pytest.raises(EmptyFolderError, match="one item per sub-folder"):
        enroll(service, tmp_path, "")
