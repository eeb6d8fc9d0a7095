from __future__ import annotations

import io
import re
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from t2r.data import DataError, decode_image, detect_image_format, encode_image

RNG = np.random.default_rng(0)


def smooth_image(height: int, width: int, channels: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    planes = [127 + 100 * np.sin(x / 9 + c) * np.cos(y / 13 - c) for c in range(channels)]
    return np.stack(planes, axis=-1).round().astype(np.uint8)


@pytest.mark.parametrize(
    ("dtype", "channels"),
    [(np.uint8, 1), (np.uint8, 3), (np.uint8, 4), (np.uint16, 1), (np.uint16, 3), (np.uint16, 4)],
)
def test_png_round_trip_is_exact(dtype: type, channels: int) -> None:
    image = RNG.integers(0, np.iinfo(dtype).max + 1, (17, 23, channels), dtype=dtype)
    data = encode_image(image, "png")
    assert detect_image_format(data) == "png"
    decoded = decode_image(data, image.shape, dtype, key="img")
    assert decoded.dtype == dtype
    np.testing.assert_array_equal(decoded, image)


def test_png16_color_written_here_is_a_valid_png() -> None:
    # Pillow reads 16-bit RGB as 8-bit RGB: the high byte of each sample.
    image = RNG.integers(0, 65536, (9, 11, 3), dtype=np.uint16)
    with Image.open(io.BytesIO(encode_image(image, "png"))) as pillow:
        assert pillow.size == (11, 9)
        np.testing.assert_array_equal(np.asarray(pillow), (image >> 8).astype(np.uint8))


# An independent 16-bit PNG encoder with every filter type and Adam7 interlacing,
# as libpng (e.g. TensorFlow's encode_png) may write them.
ADAM7 = [
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
]


def paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def filter_rows(rows: np.ndarray, bpp: int, filter_types: list[int]) -> bytes:
    out = bytearray()
    prev = [0] * rows.shape[1]
    for y, row in enumerate(rows.tolist()):
        kind = filter_types[y % len(filter_types)]
        out.append(kind)
        for i, value in enumerate(row):
            left = row[i - bpp] if i >= bpp else 0
            upleft = prev[i - bpp] if i >= bpp else 0
            predictor = [0, left, prev[i], (left + prev[i]) // 2, paeth(left, prev[i], upleft)]
            out.append((value - predictor[kind]) % 256)
        prev = row
    return bytes(out)


def png16(image: np.ndarray, filter_types: list[int], interlace: bool) -> bytes:
    height, width, channels = image.shape
    bpp = 2 * channels
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    raw = b""
    for x0, y0, dx, dy in passes:
        sub = image[y0::dy, x0::dx]
        if sub.size:
            rows = sub.astype(">u2").view(np.uint8).reshape(sub.shape[0], -1)
            raw += filter_rows(rows, bpp, filter_types)
    compressed = zlib.compress(raw)

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + payload))
        return struct.pack(">I", len(payload)) + kind + payload + crc

    color_type = {3: 2, 4: 6}[channels]
    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, int(interlace))
    half = len(compressed) // 2  # two IDAT chunks
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", compressed[:half])
        + chunk(b"IDAT", compressed[half:])
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("filter_types", [[0], [1], [2], [3], [4], [0, 1, 2, 3, 4]])
@pytest.mark.parametrize("interlace", [False, True])
@pytest.mark.parametrize("channels", [3, 4])
def test_png16_color_from_other_encoders(
    filter_types: list[int], interlace: bool, channels: int
) -> None:
    image = RNG.integers(0, 65536, (11, 13, channels), dtype=np.uint16)
    data = png16(image, filter_types, interlace)
    np.testing.assert_array_equal(decode_image(data, image.shape, np.uint16), image)


@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_round_trip_within_tolerance(channels: int) -> None:
    image = smooth_image(48, 64, channels)
    data = encode_image(image, "jpeg", quality=95)
    assert detect_image_format(data) == "jpeg"
    decoded = decode_image(data, image.shape, np.uint8, key="cam")
    assert decoded.shape == image.shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - image.astype(int)).mean() < 3


def test_jpeg_quality_is_used() -> None:
    image = smooth_image(64, 64, 3) + RNG.integers(0, 20, (64, 64, 3), dtype=np.uint8)
    assert len(encode_image(image, "jpeg", quality=20)) < len(encode_image(image, "jpeg", 95))


def test_format_comes_from_the_bytes_not_the_spec() -> None:
    image = smooth_image(8, 8, 3)
    png = encode_image(image, "png")
    # A feature declared as JPEG that holds PNG bytes still decodes (losslessly).
    np.testing.assert_array_equal(decode_image(png, (8, 8, 3), np.uint8, "jpeg_feature"), image)
    assert detect_image_format(b"GIF89a") is None


def test_cmyk_jpeg_falls_back_to_pillow() -> None:
    buffer = io.BytesIO()
    Image.new("CMYK", (10, 6), (0, 255, 255, 0)).save(buffer, format="JPEG", quality=95)
    decoded = decode_image(buffer.getvalue(), (6, 10, 3), np.uint8)
    assert decoded.shape == (6, 10, 3)
    assert decoded[..., 0].mean() > 200 and decoded[..., 1].mean() < 60


def test_palette_png_decodes_to_rgb() -> None:
    buffer = io.BytesIO()
    Image.new("P", (5, 4), 0).save(buffer, format="PNG")
    assert decode_image(buffer.getvalue(), (4, 5, 3), np.uint8).shape == (4, 5, 3)


def test_torch_dtypes_are_accepted() -> None:
    image = RNG.integers(0, 65536, (4, 5, 1), dtype=np.uint16)
    decoded = decode_image(encode_image(image, "png"), (4, 5, 1), torch.uint16)
    np.testing.assert_array_equal(decoded, image)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_empty_bytes_decode_to_zeros(dtype: type) -> None:
    decoded = decode_image(b"", (3, 4, 3), dtype, key="optional_image")
    assert decoded.shape == (3, 4, 3) and decoded.dtype == dtype
    assert not decoded.any()


def test_wrong_size_names_key_and_shapes() -> None:
    data = encode_image(smooth_image(32, 40, 3), "jpeg")
    expected = (
        "image 'state/image': expected shape (64, 64, 3), but the jpeg header says 32x40 pixels"
    )
    with pytest.raises(DataError, match=re.escape(expected)):
        decode_image(data, (64, 64, 3), np.uint8, key="state/image")


@pytest.mark.parametrize("data_format", ["jpeg", "png"])
def test_wrong_channel_count_is_an_error(data_format: str) -> None:
    data = encode_image(smooth_image(8, 8, 1), data_format)  # type: ignore[arg-type]
    with pytest.raises(DataError, match=re.escape("expected shape (8, 8, 3)") + ".*(8, 8, 1)"):
        decode_image(data, (8, 8, 3), np.uint8, key="gray")


def test_wrong_bit_depth_is_an_error() -> None:
    data = encode_image(smooth_image(8, 8, 3), "jpeg")
    with pytest.raises(DataError, match=r"'depth': expected uint16 pixels.*holds uint8"):
        decode_image(data, (8, 8, 3), np.uint16, key="depth")


@pytest.mark.parametrize(
    "data",
    [b"not an image", encode_image(smooth_image(8, 8, 3), "png")[:60], b"\xff\xd8\xff\xe0junk"],
)
def test_undecodable_bytes_name_the_key(data: bytes) -> None:
    with pytest.raises(DataError, match="'broken'"):
        decode_image(data, (8, 8, 3), np.uint8, key="broken")


def test_truncated_png16_color_names_the_key() -> None:
    data = encode_image(RNG.integers(0, 65536, (8, 8, 3), dtype=np.uint16), "png")
    with pytest.raises(DataError, match=r"'depth16'.*16-bit PNG"):
        decode_image(data[: len(data) // 2], (8, 8, 3), np.uint16, key="depth16")


def test_encode_rejects_what_it_cannot_store() -> None:
    with pytest.raises(ValueError, match="JPEG takes uint8"):
        encode_image(np.zeros((4, 4, 3), np.uint16), "jpeg")
    with pytest.raises(ValueError, match="PNG takes uint8 or uint16"):
        encode_image(np.zeros((4, 4, 3), np.float32), "png")
    with pytest.raises(ValueError, match="PNG takes"):
        encode_image(np.zeros((4, 4, 2), np.uint8), "png")
    with pytest.raises(ValueError, match="unknown data_format"):
        encode_image(np.zeros((4, 4, 3), np.uint8), "webp")  # type: ignore[arg-type]
