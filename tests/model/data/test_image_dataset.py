"""ImageDataset: decodes through decode_image (EXIF orientation), labels, and a corrupt file in
the folder is skipped, recorded and substituted by an image of the same item."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import functional as TF

from model.data.image_dataset import ImageDataset
from model.data.sample import Sample
from model.data.transforms import eval_transform
from tests.model.data.photo_files import jpeg_bytes, photo, write

# EXIF tag 0x0112; value 6 means "rotate 90° clockwise to display".
ORIENTATION_TAG = 0x0112
ROTATE_90_CW = 6


def to_tensor(img: Image.Image) -> torch.Tensor:
    return TF.to_tensor(img)


def test_reads_through_decode_image_with_exif_orientation(tmp_path: Path) -> None:
    img = photo("rocket", max_side=48)  # landscape: w > h
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = ROTATE_90_CW
    path = write(tmp_path / "r.jpg", jpeg_bytes(img, exif=exif.tobytes()))
    ds = ImageDataset([Sample(str(path), "r")], {"r": 3}, to_tensor)
    tensor, label, index = ds[0]
    w, h = img.size
    # PIL's plain open would give (3, h, w); the service's decode path turns it upright.
    assert tensor.shape == (3, w, h)
    assert (label, index) == (3, 0)
    assert (
        tensor.dtype == torch.float32 and 0.0 <= float(tensor.min()) <= float(tensor.max()) <= 1.0
    )


def test_corrupt_file_is_skipped_counted_and_substituted(
    tmp_path: Path, photo_jpegs: dict[str, bytes]
) -> None:
    samples = [
        Sample(str(write(tmp_path / "a" / "1.jpg", photo_jpegs["chelsea"])), "a"),
        Sample(str(write(tmp_path / "a" / "2.jpg", photo_jpegs["chelsea"][:200])), "a"),  # cut
        Sample(str(write(tmp_path / "b" / "1.jpg", photo_jpegs["coffee"])), "b"),
        Sample(str(write(tmp_path / "b" / "2.jpg", b"")), "b"),  # empty file
        Sample(str(write(tmp_path / "c" / "1.jpg", photo_jpegs["rocket"])), "c"),
        Sample(str(tmp_path / "c" / "gone.jpg"), "c"),  # deleted after listing
    ]
    labels = {"a": 0, "b": 1, "c": 2}
    ds = ImageDataset(samples, labels, eval_transform((32, 16)))
    got = [(label, index) for _, label, index in (ds[i] for i in range(len(ds)))]
    # Each bad sample is replaced by the readable image of the same item.
    assert got == [(0, 0), (0, 0), (1, 2), (1, 2), (2, 4), (2, 4)]
    assert ds.skipped_count == 3
    assert ds.bad_paths == {samples[1].path, samples[3].path, samples[5].path}
    # Known bad paths are not read again; the count does not grow.
    assert ds[1][2] == 0 and ds.skipped_count == 3
    loader = DataLoader(ds, batch_size=6, num_workers=0)
    images, batch_labels, indices = next(iter(loader))
    assert images.shape == (6, 3, 32, 16)
    assert batch_labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert indices.tolist() == [0, 0, 2, 2, 4, 4]
    assert torch.equal(images[0], images[1])


def test_falls_back_to_another_item_then_fails(
    tmp_path: Path, photo_jpegs: dict[str, bytes]
) -> None:
    bad = Sample(str(write(tmp_path / "bad.jpg", b"not an image")), "x")
    good = Sample(str(write(tmp_path / "good.jpg", photo_jpegs["coffee"])), "y")
    ds = ImageDataset([bad, good], {"x": 0, "y": 1}, to_tensor)
    _, label, index = ds[0]
    assert (label, index) == (1, 1)  # labels stay consistent with the image returned
    only_bad = ImageDataset([bad], {"x": 0}, to_tensor)
    with pytest.raises(RuntimeError, match="no readable image"):
        only_bad[0]


def test_eval_pixels_match_the_decoded_image(tmp_path: Path, photo_jpegs: dict[str, bytes]) -> None:
    path = write(tmp_path / "c.jpg", photo_jpegs["chelsea"])
    ds = ImageDataset([Sample(str(path), "c")], {"c": 0}, eval_transform((24, 40)))
    tensor = ds[0][0]
    with Image.open(path) as img:
        expected = np.asarray(img.convert("RGB").resize((40, 24), Image.Resampling.BILINEAR))
    assert torch.equal(tensor, torch.from_numpy(expected.transpose(2, 0, 1).copy()).float() / 255)


def test_unknown_item_label_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no label for items"):
        ImageDataset([Sample(str(tmp_path / "x.jpg"), "x")], {"y": 0}, to_tensor)
