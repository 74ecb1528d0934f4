"""Safe decoding of untrusted image bytes (shoppers' uploads).

Every failure is an `InvalidImage` with a message that names the problem, so the encoder can
answer INVALID_ARGUMENT for that request alone and keep serving the rest of its batch.
Limits keep memory bounded: the encoded size is checked before decoding and the pixel count is
read from the header before any pixel is decoded (a 30000x30000 PNG costs nothing to refuse).
"""
from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from productsearch.core.limits import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS

ALLOWED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP"}


class InvalidImage(ValueError):
    """The bytes are not an acceptable image; the message says why."""


DECODED_MAX_SIDE = 512  # the towers take ~100-224 px: a decoded image is kept at most this big


def decode_image(data: bytes, max_bytes: int = MAX_IMAGE_BYTES, max_pixels: int = MAX_IMAGE_PIXELS,
                 max_side: int = DECODED_MAX_SIDE) -> Image.Image:
    """Decode encoded image bytes to an RGB PIL image no larger than `max_side` on either side, or
    raise InvalidImage. Shrunk as soon as it is decoded, so a batch of 64 rows holds 64 small
    images (<= 0.8 MB each), never 64 full decodes (a 25 MP PNG is 75 MB): only the image being
    decoded is ever held at full size."""
    if len(data) == 0:
        raise InvalidImage("image is empty (0 bytes)")
    if len(data) > max_bytes:
        raise InvalidImage(f"image is too large: {len(data)} bytes > limit {max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # Only these formats' parsers ever see the bytes (PIL would otherwise try each of
            # its ~40 plugins, TIFF/PSD/EPS... included): a smaller attack surface.
            image = Image.open(io.BytesIO(data), formats=sorted(ALLOWED_FORMATS))
            if image.format not in ALLOWED_FORMATS:
                raise InvalidImage(f"unsupported image format {image.format}; send JPEG or PNG")
            width, height = image.size
            if width * height > max_pixels:
                raise InvalidImage(
                    f"image has too many pixels: {width}x{height} > limit {max_pixels} pixels"
                )
            if width == 0 or height == 0:
                raise InvalidImage(f"image has no pixels ({width}x{height})")
            image.draft("RGB", (max_side, max_side))  # JPEG: decode at reduced scale already
            image.load()
    except InvalidImage:
        raise
    except UnidentifiedImageError:
        raise InvalidImage(
            f"bytes are not a recognised image (expected JPEG or PNG; accepted: {', '.join(sorted(ALLOWED_FORMATS))})"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise InvalidImage(f"image refused as a decompression bomb: {err}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise InvalidImage(f"corrupt or truncated image: {err}") from None
    image = image.convert("RGB")
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    return image
