"""Image bytes → RGB pixels: the one preprocessing path shared by the service, the evaluation code
and the export parity check (torch-free).

Decoding is judged by the bytes, never by a declared content type. Rules:

- formats: JPEG, PNG, WebP, GIF (first frame), BMP;
- the pixel limit is checked from the header, before any pixel is decoded; Pillow's own
  decompression-bomb warning is turned into an error as well;
- EXIF orientation is applied;
- every mode becomes 8-bit RGB: alpha is composited over white (product photos with transparent
  backgrounds are shown on white), palettes are expanded, CMYK is converted, and 16-bit greyscale is
  rescaled ``v * 255 / 65535`` (rounded) instead of being clipped at 255.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps

from artifact.preprocess_spec import PreprocessSpec

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
DEFAULT_MAX_PIXELS = 40_000_000

_WHITE = (255, 255, 255, 255)
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class ImageDecodeError(ValueError):
    """The bytes are not a decodable image of an accepted format (HTTP 422)."""


class ImageTooLargeError(ValueError):
    """The image has more pixels than allowed (HTTP 413)."""


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode ``data`` into an 8-bit RGB image with EXIF orientation applied.

    Raises :class:`ImageDecodeError` for empty, unknown, truncated or corrupt data and
    :class:`ImageTooLargeError` when ``width * height > max_pixels``.
    """
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
    try:
        img.seek(0)
        img.load()
        img = ImageOps.exif_transpose(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(str(exc)) from exc
    except Exception as exc:
        raise ImageDecodeError(f"truncated or corrupt {img.format} image: {exc}") from exc
    return to_rgb(img)


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


def resize_rgb(img: Image.Image, spec: PreprocessSpec) -> Image.Image:
    """Resize the whole image (no crop, aspect ratio not kept) to the spec's ``(H, W)``."""
    if img.size == (spec.width, spec.height):
        return img
    return img.resize((spec.width, spec.height), Image.Resampling.BILINEAR)


def to_input_array(img: Image.Image, spec: PreprocessSpec) -> npt.NDArray[np.uint8]:
    """One resized RGB image → ``(3, H, W)`` ``uint8`` in the spec's layout."""
    resized = resize_rgb(img, spec)
    hwc = np.asarray(resized, dtype=np.uint8)
    return np.ascontiguousarray(hwc.transpose(2, 0, 1))


def preprocess_bytes(
    data: bytes, spec: PreprocessSpec, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> npt.NDArray[np.uint8]:
    """Image bytes → ``(3, H, W)`` ``uint8``: decode, orient, convert, resize, lay out."""
    return to_input_array(decode_image(data, max_pixels=max_pixels), spec)


def stack_batch(arrays: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[np.uint8]:
    """``[(3, H, W)] * N`` → ``(N, 3, H, W)`` contiguous ``uint8``."""
    if not arrays:
        raise ValueError("empty batch")
    return np.ascontiguousarray(np.stack(arrays, axis=0))
