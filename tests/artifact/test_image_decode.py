"""The one decode path: formats, EXIF, modes (pixel content), limits, corrupt input, and the
contract's JPEG draft against a Pillow-drafted oracle."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from PIL import Image, ImageOps
from skimage import data as skdata

from artifact import image_decode
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


# -- JPEG draft: a DCT-scaled decode when the contract sets jpeg_draft_min_ratio -------------

# (H, W) = (32, 48), as SPEC: not square, so the axes cannot be mixed up unnoticed.
DRAFT_SPEC = dataclasses.replace(SPEC, jpeg_draft_min_ratio=2.0)


@pytest.fixture(scope="module")
def big_photo() -> Image.Image:
    """400×300 with detail at every scale, so any change of the decode shows in the pixels."""
    return Image.fromarray(skdata.astronaut()).resize((400, 300), Image.Resampling.LANCZOS)


def drafted_by_hand(raw: bytes, request: tuple[int, int], size: tuple[int, int]) -> Image.Image:
    """The oracle's decode: Pillow's draft asked for ``request``, checked to give ``size``."""
    img = Image.open(io.BytesIO(raw))
    img.draft("RGB", request)
    img.load()
    assert img.size == size
    return img


@pytest.mark.parametrize(
    ("ratio", "asked", "scale"),
    [
        # r = 2 asks for r/2 × (W, H) = (48, 32): 400/8 >= 48 and 300/8 >= 32, so 1/8.
        (2.0, (48, 32), 8),
        # r = 3 asks for ceil(1.5 × (48, 32)) = (72, 48): 400/5, 300/6 → the largest power of
        # two at most 5 is 4.
        (3.0, (72, 48), 4),
    ],
)
def test_draft_equals_the_pillow_drafted_image_resized_from_its_exact_box(
    big_photo: Image.Image, ratio: float, asked: tuple[int, int], scale: int
) -> None:
    raw = encode(big_photo, "JPEG", quality=90)
    spec = dataclasses.replace(SPEC, jpeg_draft_min_ratio=ratio)
    # ceil(400 / s) × ceil(300 / s); the source is the box (0, 0, 400 / s, 300 / s) of it.
    size = (-(-400 // scale), -(-300 // scale))
    drafted = drafted_by_hand(raw, asked, size)
    expected = np.asarray(
        drafted.resize((48, 32), Image.Resampling.BILINEAR, box=(0, 0, 400 / scale, 300 / scale))
    ).transpose(2, 0, 1)
    got = preprocess_bytes(raw, spec)
    assert got.shape == (3, 32, 48) and got.dtype == np.uint8
    assert np.array_equal(got, expected)
    full = preprocess_bytes(raw, SPEC)
    assert np.array_equal(full, to_input_array(decode_image(raw), SPEC))
    assert not np.array_equal(got, full)
    # A different decode of the same picture, not another picture.
    assert np.abs(got.astype(int) - full.astype(int)).mean() < 8


def test_draft_applies_from_exactly_ratio_times_the_input(big_photo: Image.Image) -> None:
    # The gate is r × (W, H) = (96, 64) on both axes, inclusive.
    at_gate = encode(big_photo.resize((96, 64)), "JPEG", quality=90)
    expected = drafted_by_hand(at_gate, (48, 32), (48, 32))
    assert np.array_equal(
        preprocess_bytes(at_gate, DRAFT_SPEC), np.asarray(expected).transpose(2, 0, 1)
    )
    for size in ((95, 64), (96, 63)):
        below = encode(big_photo.resize(size), "JPEG", quality=90)
        assert np.array_equal(
            preprocess_bytes(below, DRAFT_SPEC), to_input_array(decode_image(below), SPEC)
        )


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_draft_leaves_other_formats_alone(big_photo: Image.Image, fmt: str) -> None:
    raw = encode(big_photo, fmt)
    assert np.array_equal(preprocess_bytes(raw, DRAFT_SPEC), preprocess_bytes(raw, SPEC))


def test_draft_off_when_the_contract_has_no_ratio(big_photo: Image.Image) -> None:
    raw = encode(big_photo, "JPEG", quality=90)
    assert SPEC.jpeg_draft_min_ratio is None
    assert np.array_equal(preprocess_bytes(raw, SPEC), to_input_array(decode_image(raw), SPEC))


def test_decode_image_never_drafts(big_photo: Image.Image) -> None:
    # The full decode for everything that wants the picture itself (training, thumbnails).
    assert decode_image(encode(big_photo, "JPEG", quality=90)).size == (400, 300)


def exif_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def test_draft_judges_the_size_as_shown_after_exif_orientation(big_photo: Image.Image) -> None:
    # Stored 83×403 and turned a quarter (orientation 6), it is shown 403×83: at least
    # 2 × (48, 32) = (96, 64) as shown, though its stored width (83) is not 96.
    stored = big_photo.resize((83, 403))
    raw = encode(stored, "JPEG", quality=90, exif=exif_orientation(6))
    # Asked in stored axes, (32, 48): 83/2 and 403/8 → 1/2, giving ceil(41.5) × ceil(201.5).
    drafted = ImageOps.exif_transpose(drafted_by_hand(raw, (32, 48), (42, 202)))
    assert drafted.size == (202, 42)
    # The source was stored (0, 0, 41.5, 201.5); the clockwise quarter turn puts that box at
    # x from 202 - 201.5 to 202 and y from 0 to 41.5.
    box = (0.5, 0.0, 202.0, 41.5)
    expected = np.asarray(drafted.resize((48, 32), Image.Resampling.BILINEAR, box=box))
    got = preprocess_bytes(raw, DRAFT_SPEC)
    assert np.array_equal(got, expected.transpose(2, 0, 1))
    # Orientation is applied as in the full decode: the same picture, the same way up.
    full = preprocess_bytes(raw, SPEC)
    assert np.abs(got.astype(int) - full.astype(int)).mean() < 8


@pytest.mark.parametrize("orientation", range(1, 9))
def test_the_drafted_box_follows_every_exif_transpose(orientation: int) -> None:
    # Pillow is the oracle: cropping the box and then transposing must equal transposing and
    # then cropping where _shown_box says the box went.
    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(orientation)
    stored = Image.fromarray(np.arange(7 * 5, dtype=np.uint8).reshape(5, 7) * 7)
    crop = stored.crop((0, 0, 4, 3))
    shown = stored if method is None else stored.transpose(method)
    expected = crop if method is None else crop.transpose(method)
    x0, y0, x1, y1 = image_decode._shown_box(orientation, stored.size, 4, 3)
    assert np.array_equal(np.asarray(shown.crop((x0, y0, x1, y1))), np.asarray(expected))


def test_draft_keeps_cmyk_and_greyscale_conversion(big_photo: Image.Image) -> None:
    for mode in ("L", "CMYK"):
        raw = encode(big_photo.convert(mode), "JPEG", quality=90)
        drafted = drafted_by_hand(raw, (48, 32), (50, 38))
        expected = image_decode.to_rgb(drafted).resize(
            (48, 32), Image.Resampling.BILINEAR, box=(0, 0, 50, 37.5)
        )
        got = preprocess_bytes(raw, DRAFT_SPEC)
        assert np.array_equal(got, np.asarray(expected).transpose(2, 0, 1)), mode


def test_draft_still_refuses_what_the_full_decode_refuses(big_photo: Image.Image) -> None:
    raw = encode(big_photo, "JPEG", quality=90)
    with pytest.raises(ImageDecodeError):
        preprocess_bytes(raw[: len(raw) // 2], DRAFT_SPEC)
    # The pixel limit is the source's, read from the header, not the drafted size's.
    with pytest.raises(ImageTooLargeError):
        preprocess_bytes(raw, DRAFT_SPEC, max_pixels=400 * 300 - 1)
