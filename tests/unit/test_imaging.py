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
