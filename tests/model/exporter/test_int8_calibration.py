"""INT8 calibration photos: read through the serving path, refused when they cannot be read."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artifact.image_decode import preprocess_bytes
from artifact.preprocess_spec import PreprocessSpec
from bench.loadtest.photo_set import build_photo_set
from model.exporter.calibration_photos import (
    CalibrationError,
    calibration_files,
    load_calibration_batch,
)
from model.exporter.calibration_reader import CalibrationBatches

SPEC = PreprocessSpec(input_size=(32, 32), embedding_dim=4, model_name="cal", model_version="1")


@pytest.fixture(scope="module")
def views() -> list[bytes]:
    """Real JPEG views of the shipped photos, up to 480 px: 15x the 32-px model input."""
    return build_photo_set(views_per_photo=1).all_views()


def test_photos_are_read_exactly_as_the_service_reads_them(
    views: list[bytes], tmp_path: Path
) -> None:
    # A JPEG draft in the contract changes the pixels of large JPEGs: the calibration must see
    # the drafted pixels, as the service will, not a full decode.
    drafted = dataclasses.replace(SPEC, jpeg_draft_min_ratio=2.0)
    (tmp_path / "b").mkdir()
    (tmp_path / "a").mkdir()
    paths = [tmp_path / "b" / "0.jpg", tmp_path / "a" / "1.jpg", tmp_path / "a" / "0.JPG"]
    for path, data in zip(paths, views, strict=False):
        path.write_bytes(data)

    batch = load_calibration_batch(tmp_path, drafted)

    in_order = [paths[2], paths[1], paths[0]]  # a/0.JPG, a/1.jpg, b/0.jpg
    expected = np.stack([preprocess_bytes(p.read_bytes(), drafted) for p in in_order])
    assert batch.dtype == np.uint8 and batch.shape == (3, 3, 32, 32)
    np.testing.assert_array_equal(batch, expected)
    full = np.stack([preprocess_bytes(p.read_bytes(), SPEC) for p in in_order])
    assert not np.array_equal(batch, full), "the draft did not apply: this test shows nothing"


def test_other_files_and_hidden_entries_are_ignored(views: list[bytes], tmp_path: Path) -> None:
    (tmp_path / "photo.jpg").write_bytes(views[0])
    (tmp_path / "notes.txt").write_text("not a photo")
    (tmp_path / ".hidden.jpg").write_bytes(b"garbage")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "x.jpg").write_bytes(b"garbage")
    assert calibration_files(tmp_path) == [tmp_path / "photo.jpg"]


def test_a_large_folder_is_sampled_evenly_not_cut(tmp_path: Path) -> None:
    for folder in ("a", "b", "c"):
        (tmp_path / folder).mkdir()
        for i in range(4):
            (tmp_path / folder / f"{i}.png").write_bytes(b"")
    picked = calibration_files(tmp_path, limit=4)
    names = [str(p.relative_to(tmp_path)) for p in picked]
    # 12 files, 4 picks at positions 0, 4 (rounded from 3.67), 7, 11: every folder is represented.
    assert names == ["a/0.png", "b/0.png", "b/3.png", "c/3.png"]


@pytest.mark.parametrize("kind", ["missing", "a file", "empty", "only other files"])
def test_a_folder_without_photos_is_refused_clearly(kind: str, tmp_path: Path) -> None:
    target = tmp_path / "cal"
    if kind == "a file":
        target.write_bytes(b"x")
    elif kind != "missing":
        target.mkdir()
    if kind == "only other files":
        (target / "README.md").write_text("photos go here")
    with pytest.raises(CalibrationError, match=r"calibration directory .*cal") as excinfo:
        load_calibration_batch(target, SPEC)
    message = str(excinfo.value)
    if kind in ("missing", "a file"):
        assert "does not exist or is no folder" in message
    else:
        assert "no images (.jpg, .jpeg, .png" in message


def test_unreadable_photos_are_refused_by_name(views: list[bytes], tmp_path: Path) -> None:
    (tmp_path / "good.jpg").write_bytes(views[0])
    (tmp_path / "broken.jpg").write_bytes(views[1][:200])  # truncated
    (tmp_path / "empty.png").write_bytes(b"")
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="TIFF")  # not a format the service accepts
    (tmp_path / "tiff.png").write_bytes(buf.getvalue())
    with pytest.raises(CalibrationError) as excinfo:
        load_calibration_batch(tmp_path, SPEC)
    message = str(excinfo.value)
    assert message.startswith("3 calibration images could not be read")
    for name in ("broken.jpg", "empty.png", "tiff.png"):
        assert name in message
    assert "good.jpg" not in message


def test_reader_yields_every_photo_once_per_pass_in_batches() -> None:
    photos = np.arange(5 * 3 * 2 * 2, dtype=np.uint8).reshape(5, 3, 2, 2)
    reader = CalibrationBatches("images", photos, batch_size=2)
    assert len(reader) == 3
    for _ in range(2):  # a second attempt after rewind sees the same batches
        batches = []
        while (feed := reader.get_next()) is not None:
            assert list(feed) == ["images"] and feed["images"].flags.c_contiguous
            batches.append(feed["images"])
        assert [b.shape[0] for b in batches] == [2, 2, 1]
        np.testing.assert_array_equal(np.concatenate(batches), photos)
        reader.rewind()


@pytest.mark.parametrize(
    "photos",
    [np.zeros((0, 3, 2, 2), np.uint8), np.zeros((1, 3, 2, 2), np.float32), np.zeros((3, 2, 2))],
    ids=["empty", "float", "3-d"],
)
def test_reader_refuses_what_is_not_a_uint8_batch(photos: np.ndarray) -> None:
    with pytest.raises(ValueError, match="expected"):
        CalibrationBatches("images", photos)
