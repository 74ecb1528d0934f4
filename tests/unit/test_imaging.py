import io

import pytest
from PIL import Image

from productsearch.runtime.image_input import InvalidImage, decode_image


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def test_valid_png_and_jpeg_decode_to_rgb():
    image = Image.new("RGBA", (40, 30), (255, 0, 0, 255))
    for fmt in ("PNG", "JPEG"):
        data = encoded(image.convert("RGB") if fmt == "JPEG" else image, fmt)
        out = decode_image(data)
        assert out.mode == "RGB" and out.size == (40, 30)


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"this is not an image at all", "not a recognised image"),
    (encoded(Image.new("RGB", (64, 64), "blue"), "JPEG")[:200], "corrupt or truncated"),
    (encoded(Image.new("RGB", (64, 64), "blue"), "PNG")[:-30], "corrupt or truncated"),
])
def test_bad_bytes_are_refused_with_a_reason(data, message):
    with pytest.raises(InvalidImage, match=message):
        decode_image(data)


def test_decompression_bomb_is_refused_from_the_header():
    bomb = encoded(Image.new("1", (30000, 30000)), "PNG")  # tiny file, 900 MP
    assert len(bomb) < 2_000_000
    with pytest.raises(InvalidImage, match="too many pixels|decompression bomb"):
        decode_image(bomb)


def test_oversized_upload_is_refused_before_decoding():
    with pytest.raises(InvalidImage, match="too large"):
        decode_image(b"\xff" * (10 * 1024 * 1024 + 1))


def test_a_large_png_is_shrunk_to_the_decoded_cap_as_it_is_decoded():
    """A 4000x3000 PNG (36 MB decoded) comes back at most DECODED_MAX_SIDE a side, aspect kept."""
    import io as _io

    from PIL import Image as _Image

    from productsearch.runtime.image_input import DECODED_MAX_SIDE, decode_image

    buffer = _io.BytesIO()
    _Image.new("RGB", (4000, 3000), (200, 30, 30)).save(buffer, format="PNG")
    image = decode_image(buffer.getvalue())
    assert max(image.size) == DECODED_MAX_SIDE and image.size == (512, 384) and image.mode == "RGB"
    assert image.getpixel((10, 10)) == (200, 30, 30)
