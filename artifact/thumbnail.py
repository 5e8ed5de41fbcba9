"""An enrolled original → a small JPEG thumbnail, shown as the decoder shows the picture.

The pixels are the ones the model is fed before its resize (``artifact/image_decode.py``):
EXIF orientation applied, every mode made 8-bit RGB (alpha over white, palettes expanded, CMYK
converted, 16-bit greyscale rescaled), GIF's first frame. The longest side is scaled down to
:data:`THUMBNAIL_LONGEST_SIDE` with the aspect ratio kept (never up: a smaller original keeps
its size). A large JPEG is decoded DCT-scaled by libjpeg (Pillow's ``draft``) to the smallest
of 1/8, 1/4, 1/2 that still covers the thumbnail on both axes, so a 24-megapixel photo costs a
1/8-scale decode, not 72 MB of pixels; the Lanczos resize that follows does the rest.
"""

from __future__ import annotations

import io

from PIL import Image
from PIL.JpegImagePlugin import JpegImageFile

from artifact.image_decode import DEFAULT_MAX_PIXELS, decode_drafted

THUMBNAIL_LONGEST_SIDE = 256
THUMBNAIL_QUALITY = 85
THUMBNAIL_MEDIA_TYPE = "image/jpeg"


def make_thumbnail(
    data: bytes,
    *,
    longest_side: int = THUMBNAIL_LONGEST_SIDE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> bytes:
    """JPEG bytes of ``data``'s picture with its longest side at most ``longest_side``.

    The same errors as :func:`artifact.image_decode.decode_image` for bytes it would refuse.
    """

    def draft(img: Image.Image) -> None:
        if isinstance(img, JpegImageFile):
            # A square request: the same in stored and shown axes, whatever the orientation.
            img.draft(img.mode, (longest_side, longest_side))

    img, _ = decode_drafted(data, max_pixels=max_pixels, draft=draft)
    img.thumbnail((longest_side, longest_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    return out.getvalue()
