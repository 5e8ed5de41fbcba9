"""The one decode path: formats, EXIF, modes (pixel content), limits, corrupt input."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from artifact.image_decode import (
    ImageDecodeError,
    ImageTooLargeError,
    decode_image,
    preprocess_bytes,
    to_input_array,
)
from artifact.preprocess_spec import PreprocessSpec

SPEC = PreprocessSpec(input_size=(32, 48), embedding_dim=4, model_name="t", model_version="1")


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.fromarray(skdata.astronaut()).resize((64, 48))


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "WEBP", "GIF", "JPEG"])
def test_formats_decode_to_rgb(photo: Image.Image, fmt: str) -> None:
    kw = {"lossless": True} if fmt == "WEBP" else {}
    img = decode_image(encode(photo, fmt, **kw))
    assert img.mode == "RGB" and img.size == photo.size
    if fmt in ("PNG", "BMP", "WEBP"):  # lossless: exact pixels
        assert np.array_equal(np.asarray(img), np.asarray(photo))


def test_gif_first_frame_is_used() -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    img = decode_image(buf.getvalue())
    assert tuple(np.asarray(img)[4, 4]) == (255, 0, 0)


def test_exif_orientation_is_applied() -> None:
    # A 4x2 image whose left half is white; orientation 6 means "rotate 90° CW to display".
    arr = np.zeros((2, 4, 3), np.uint8)
    arr[:, :2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    raw = encode(Image.fromarray(arr), "PNG", exif=exif.tobytes())
    img = np.asarray(decode_image(raw))
    assert img.shape == (4, 2, 3)
    # After a clockwise rotation the former left half is the top half.
    assert img[:2].min() == 255 and img[2:].max() == 0


def test_greyscale_and_palette_modes() -> None:
    grey = Image.fromarray(np.array([[0, 128, 255]], np.uint8), mode="L")
    assert np.asarray(decode_image(encode(grey, "PNG")))[0].tolist() == [
        [0, 0, 0],
        [128, 128, 128],
        [255, 255, 255],
    ]
    pal = Image.new("P", (2, 1))
    pal.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    pal.putdata([0, 1])
    assert np.asarray(decode_image(encode(pal, "PNG")))[0].tolist() == [
        [10, 20, 30],
        [200, 100, 50],
    ]


def test_alpha_is_composited_over_white() -> None:
    rgba = Image.fromarray(
        np.array([[[255, 0, 0, 255], [255, 0, 0, 0], [0, 0, 255, 128]]], np.uint8), mode="RGBA"
    )
    px = np.asarray(decode_image(encode(rgba, "PNG")))[0].astype(int)
    assert px[0].tolist() == [255, 0, 0]  # opaque: unchanged
    assert px[1].tolist() == [255, 255, 255]  # transparent: white, not the hidden red
    # half-transparent blue over white: 255*(1-a) + 0*a for r, g; 255 for b (a = 128/255)
    expected_rg = round(255 * (1 - 128 / 255))
    assert abs(px[2][0] - expected_rg) <= 1 and abs(px[2][1] - expected_rg) <= 1 and px[2][2] == 255
    la = Image.fromarray(np.array([[[0, 0], [0, 255]]], np.uint8), mode="LA")
    assert np.asarray(decode_image(encode(la, "PNG")))[0].tolist() == [[255, 255, 255], [0, 0, 0]]


def test_palette_with_transparency_is_composited() -> None:
    pal = Image.new("P", (2, 1))
    pal.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    pal.putdata([0, 1])
    pal.info["transparency"] = 0
    px = np.asarray(decode_image(encode(pal, "PNG", transparency=0)))[0].tolist()
    assert px == [[255, 255, 255], [0, 255, 0]]


def test_cmyk_jpeg_converts() -> None:
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    px = np.asarray(decode_image(encode(cmyk, "JPEG", quality=100)))[4, 4].astype(int)
    assert px[0] > 240 and px[1] < 15 and px[2] < 15


def test_sixteen_bit_greyscale_is_rescaled_not_clipped() -> None:
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    img16 = Image.fromarray(values)
    raw = encode(img16, "PNG")
    assert Image.open(io.BytesIO(raw)).mode.startswith("I")
    px = np.asarray(decode_image(raw))[0, :, 0].tolist()
    # v * 255 / 65535, rounded: 0, 1, 128, 255 (clipping would give 0, 255, 255, 255)
    assert px == [0, 1, 128, 255]


@pytest.mark.parametrize(
    "payload",
    [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20],
    ids=["empty", "text", "png-magic-only"],
)
def test_garbage_is_a_decode_error(payload: bytes) -> None:
    with pytest.raises(ImageDecodeError):
        decode_image(payload)


def test_truncated_jpeg_is_a_decode_error(photo: Image.Image) -> None:
    raw = encode(photo, "JPEG")
    with pytest.raises(ImageDecodeError):
        decode_image(raw[: len(raw) // 2])


def test_unaccepted_format_is_rejected(photo: Image.Image) -> None:
    with pytest.raises(ImageDecodeError):
        decode_image(encode(photo, "TIFF"))


def test_pixel_limit_is_checked_from_the_header() -> None:
    big = Image.new("L", (2000, 1000))
    raw = encode(big, "PNG")
    with pytest.raises(ImageTooLargeError):
        decode_image(raw, max_pixels=1_999_999)
    assert decode_image(raw, max_pixels=2_000_000).size == (2000, 1000)


def test_pillow_bomb_threshold_is_a_hard_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = encode(Image.new("L", (100, 100)), "PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)  # Pillow would only warn at 10k
    with pytest.raises(ImageTooLargeError):
        decode_image(raw, max_pixels=10**9)


def test_resize_is_whole_image_bilinear_nchw(photo: Image.Image) -> None:
    arr = to_input_array(photo, SPEC)
    assert arr.shape == (3, 32, 48) and arr.dtype == np.uint8
    expected = np.asarray(photo.resize((48, 32), Image.Resampling.BILINEAR)).transpose(2, 0, 1)
    assert np.array_equal(arr, expected)
    assert np.array_equal(preprocess_bytes(encode(photo, "PNG"), SPEC), expected)
