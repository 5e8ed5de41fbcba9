"""Image bytes → RGB pixels: the one preprocessing path shared by the service, the evaluation code
and the export parity check (torch-free).

Decoding is judged by the bytes, never by a declared content type. Rules:

- formats: JPEG, PNG, WebP, GIF (first frame), BMP;
- the pixel limit is checked from the header, before any pixel is decoded; Pillow's own
  decompression-bomb warning is turned into an error as well;
- EXIF orientation is applied;
- every mode becomes 8-bit RGB: alpha is composited over white (product photos with transparent
  backgrounds are shown on white), palettes are expanded, CMYK is converted, and 16-bit greyscale is
  rescaled ``v * 255 / 65535`` (rounded) instead of being clipped at 255;
- JPEG draft (only in :func:`preprocess_bytes`, only when the model's contract sets
  ``jpeg_draft_min_ratio = r``): a JPEG whose size, as shown after its EXIF orientation, is at
  least ``r × (H, W)`` of the model input on both axes is decoded DCT-scaled by libjpeg. Pillow's
  ``draft`` is asked for ``ceil(r/2 × (H, W))`` (in the file's stored axes); it picks the largest
  of 1/8, 1/4, 1/2 that keeps the decode at least that size, so it scales exactly when the source
  reaches ``r ×`` the input. Not the input size itself: the DCT scale is a block-wise low-pass
  (each 8×8 block to 4×4, 2×2 or 1 pixel), so the exact bilinear resize that follows is left a
  reduction of at least ``r/2`` to do with its own antialiasing filter, which is what keeps the
  embedding close to the full decode's (``python -m bench.jpeg_draft_quality`` measures it). That
  resize maps the drafted image's exact source region (Pillow's draft box, carried through the
  EXIF transpose), so a width that is not a multiple of the scale does not stretch the picture.
  Orientation, mode conversion and the resize method are the same as for a full decode.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
from PIL import ExifTags, Image, ImageOps
from PIL.JpegImagePlugin import JpegImageFile

from artifact.preprocess_spec import PreprocessSpec

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
DEFAULT_MAX_PIXELS = 40_000_000

_WHITE = (255, 255, 255, 255)
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
# EXIF orientations that store the picture a quarter turn away from how it is shown.
_QUARTER_TURNS = (5, 6, 7, 8)

# (x0, y0, x1, y1) in pixels of an image, as Pillow's resize(box=...) takes it.
Box = tuple[float, float, float, float]


class ImageDecodeError(ValueError):
    """The bytes are not a decodable image of an accepted format (HTTP 422)."""


class ImageTooLargeError(ValueError):
    """The image has more pixels than allowed (HTTP 413)."""


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode ``data`` in full into an 8-bit RGB image with EXIF orientation applied.

    Raises :class:`ImageDecodeError` for empty, unknown, truncated or corrupt data and
    :class:`ImageTooLargeError` when ``width * height > max_pixels``.
    """
    return _decode(data, max_pixels, None)[0]


def _decode(
    data: bytes, max_pixels: int, draft_for: PreprocessSpec | None
) -> tuple[Image.Image, Box | None]:
    """:func:`decode_image`, JPEG-drafted for ``draft_for`` when its contract says so.

    Returns the RGB image and, when it was drafted, the box of it that holds the whole source
    (``None``: the whole image does).
    """
    if draft_for is None:
        return decode_drafted(data, max_pixels=max_pixels, draft=None)
    spec = draft_for
    return decode_drafted(data, max_pixels=max_pixels, draft=lambda img: _draft_jpeg(img, spec))


def decode_drafted(
    data: bytes, *, max_pixels: int, draft: Callable[[Image.Image], Box | None] | None
) -> tuple[Image.Image, Box | None]:
    """:func:`decode_image`, with ``draft`` called on the opened, not yet loaded image (to set
    up a DCT-scaled JPEG decode with Pillow's ``draft``); returns the RGB image and what
    ``draft`` returned (None without one). Every check and error is :func:`decode_image`'s: one
    place decides which bytes are an image, for the model and for thumbnails alike."""
    if not data:
        raise ImageDecodeError("empty file")
    # Pillow warns above Image.MAX_IMAGE_PIXELS and raises above twice that; its warning threshold
    # is enforced here as a hard limit too. (A warnings filter would be process-global state and
    # not thread-safe, so the threshold is compared directly instead.)
    limit = (
        max_pixels if Image.MAX_IMAGE_PIXELS is None else min(max_pixels, Image.MAX_IMAGE_PIXELS)
    )
    try:
        img: Image.Image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(str(exc)) from exc
    except Exception as exc:  # Pillow raises several types for garbage input
        raise ImageDecodeError(
            f"not a decodable image (accepted: {', '.join(ACCEPTED_FORMATS)})"
        ) from exc
    width, height = img.size
    if width <= 0 or height <= 0:
        raise ImageDecodeError("image has no pixels")
    if width * height > limit:
        raise ImageTooLargeError(
            f"image is {width}x{height} = {width * height} pixels; the limit is {limit}"
        )
    box = None
    try:
        # draft after seek: an MPO (a multi-picture JPEG) re-reads its tile when it seeks.
        img.seek(0)
        if draft is not None:
            box = draft(img)
        img.load()
        img = ImageOps.exif_transpose(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(str(exc)) from exc
    except Exception as exc:
        raise ImageDecodeError(f"truncated or corrupt {img.format} image: {exc}") from exc
    return to_rgb(img), box


def _draft_jpeg(img: Image.Image, spec: PreprocessSpec) -> Box | None:
    """Configure a not yet loaded JPEG to decode DCT-scaled when ``spec`` allows it (module
    docstring); return the box of the drafted image, in shown axes, that holds the whole source,
    or ``None`` when it decodes in full."""
    ratio = spec.jpeg_draft_min_ratio
    if ratio is None or not isinstance(img, JpegImageFile):
        return None
    orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
    # The model input's (width, height) in the file's stored axes.
    if orientation in _QUARTER_TURNS:
        target_w, target_h = spec.height, spec.width
    else:
        target_w, target_h = spec.width, spec.height
    width, height = img.size
    if width < ratio * target_w or height < ratio * target_h:
        return None
    request = (math.ceil(target_w * ratio / 2), math.ceil(target_h * ratio / 2))
    drafted = img.draft(img.mode, request)
    if drafted is None or img.size == (width, height):
        return None  # not drafted (a multi-tile file) or at scale 1, which is the full decode
    # (0, 0, width / s, height / s): the last row and column hold less than s source pixels.
    _, (_, _, box_w, box_h) = drafted
    return _shown_box(orientation, img.size, box_w, box_h)


def _shown_box(orientation: int, size: tuple[int, int], box_w: float, box_h: float) -> Box:
    """Where the top-left ``box_w × box_h`` of a stored ``size`` image lies after
    ``ImageOps.exif_transpose`` for EXIF ``orientation``."""
    w, h = size
    match orientation:
        case 2:  # FLIP_LEFT_RIGHT
            return (w - box_w, 0, w, box_h)
        case 3:  # ROTATE_180
            return (w - box_w, h - box_h, w, h)
        case 4:  # FLIP_TOP_BOTTOM
            return (0, h - box_h, box_w, h)
        case 5:  # TRANSPOSE
            return (0, 0, box_h, box_w)
        case 6:  # ROTATE_270 (a quarter turn clockwise)
            return (h - box_h, 0, h, box_w)
        case 7:  # TRANSVERSE
            return (h - box_h, w - box_w, h, w)
        case 8:  # ROTATE_90 (a quarter turn anticlockwise)
            return (0, w - box_w, box_h, w)
        case _:
            return (0, 0, box_w, box_h)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB by the rules in the module docstring."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in _SIXTEEN_BIT_MODES or mode == "F":
        return Image.fromarray(_rescale_wide_grey(img), mode="L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
        if mode == "RGB":
            return img
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE)
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return img.convert("RGB")
    except ValueError as exc:
        raise ImageDecodeError(f"image mode {mode!r} cannot be converted to RGB") from exc


def _rescale_wide_grey(img: Image.Image) -> npt.NDArray[np.uint8]:
    """Map 16-bit (or 32-bit int / float holding 16-bit values) greyscale to 0..255, rounded."""
    arr = np.asarray(img).astype(np.float64)
    if img.mode == "F" and arr.size and float(arr.max()) <= 1.0:
        scaled = arr * 255.0
    else:
        scaled = np.clip(arr, 0, 65535) * (255.0 / 65535.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def resize_rgb(img: Image.Image, spec: PreprocessSpec, *, box: Box | None = None) -> Image.Image:
    """Resize the whole image (no crop, aspect ratio not kept) to the spec's ``(H, W)``.

    ``box``: the region of ``img`` that holds the whole picture (a JPEG draft's), else all of it.
    """
    if box is None and img.size == (spec.width, spec.height):
        return img
    return img.resize((spec.width, spec.height), Image.Resampling.BILINEAR, box=box)


def to_input_array(img: Image.Image, spec: PreprocessSpec) -> npt.NDArray[np.uint8]:
    """One RGB image → resized ``(3, H, W)`` ``uint8`` in the spec's layout."""
    return _chw(resize_rgb(img, spec))


def preprocess_bytes(
    data: bytes, spec: PreprocessSpec, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> npt.NDArray[np.uint8]:
    """Image bytes → ``(3, H, W)`` ``uint8``: decode (JPEG-drafted as the spec says), orient,
    convert, resize, lay out. The one path from bytes to the model's input."""
    img, box = _decode(data, max_pixels, spec)
    return _chw(resize_rgb(img, spec, box=box))


def _chw(resized: Image.Image) -> npt.NDArray[np.uint8]:
    hwc = np.asarray(resized, dtype=np.uint8)
    return np.ascontiguousarray(hwc.transpose(2, 0, 1))


def stack_batch(arrays: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[np.uint8]:
    """``[(3, H, W)] * N`` → ``(N, 3, H, W)`` contiguous ``uint8``."""
    if not arrays:
        raise ValueError("empty batch")
    return np.ascontiguousarray(np.stack(arrays, axis=0))
