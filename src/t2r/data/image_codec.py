"""Image bytes <-> numpy arrays: JPEG (simplejpeg, Pillow fallback) and PNG (Pillow).

Images are ``(H, W, C)`` arrays, C in {1, 3} (PNG also 4), uint8 (JPEG and PNG)
or uint16 (PNG). The format is detected from the magic bytes, never taken from
the spec, so a ``'jpeg'`` image feature holding PNG data still decodes.

16-bit PNG with 3 or 4 channels: Pillow has no 16-bit RGB image mode (it reads
such files as 8-bit RGB, dropping the low bytes, and cannot write them). We write
them with a minimal PNG writer (zlib, "Up" filter) and read them with Pillow's
C PNG decoder twice, once keeping the high and once the low byte of each sample.
So ``uint16`` images of 1, 3 or 4 channels round-trip exactly.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any, Literal

import numpy as np
import simplejpeg
from PIL import Image

from t2r.data.errors import DataError

__all__ = ["decode_image", "detect_image_format", "encode_image"]

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_COLOR_TYPES = {1: 0, 3: 2, 4: 6}  # channels -> PNG color type (gray, RGB, RGBA)


def detect_image_format(data: bytes) -> Literal["jpeg", "png"] | None:
    """``'jpeg'`` or ``'png'`` from the magic bytes, else None."""
    if data.startswith(_JPEG_MAGIC):
        return "jpeg"
    if data.startswith(_PNG_MAGIC):
        return "png"
    return None


def _numpy_dtype(dtype: Any) -> np.dtype[Any]:
    """Accepts numpy dtypes and torch dtypes (``torch.uint8`` -> ``uint8``)."""
    text = str(dtype)
    if text.startswith("torch."):
        return np.dtype(text.removeprefix("torch."))
    return np.dtype(dtype)


def encode_image(
    array: np.ndarray, data_format: Literal["jpeg", "png"] = "jpeg", quality: int = 95
) -> bytes:
    """Encodes an ``(H, W, C)`` (or ``(H, W)``) image.

    Args:
        array: uint8 for JPEG (C in 1, 3); uint8 or uint16 for PNG (C in 1, 3, 4).
        data_format: ``'jpeg'`` (lossy, 4:4:4 chroma) or ``'png'`` (lossless).
        quality: JPEG quality, 1..100.

    Raises:
        ValueError: unsupported format, dtype, shape or channel count.
    """
    image = np.asarray(array)
    if image.ndim == 2:
        image = image[:, :, None]
    fmt = data_format.lower()
    if image.ndim != 3:
        raise ValueError(f"encode_image: expected an (H, W, C) array, got shape {image.shape}")
    channels = image.shape[2]
    if fmt in ("jpeg", "jpg"):
        if image.dtype != np.uint8 or channels not in (1, 3):
            raise ValueError(
                f"encode_image: JPEG takes uint8 images with 1 or 3 channels, "
                f"got {image.dtype} with shape {image.shape}"
            )
        gray = channels == 1
        return bytes(
            simplejpeg.encode_jpeg(
                np.ascontiguousarray(image),
                quality=quality,
                colorspace="GRAY" if gray else "RGB",
                colorsubsampling="Gray" if gray else "444",
            )
        )
    if fmt != "png":
        raise ValueError(f"encode_image: unknown data_format {data_format!r}; use 'jpeg' or 'png'")
    if image.dtype not in (np.uint8, np.uint16) or channels not in _PNG_COLOR_TYPES:
        raise ValueError(
            f"encode_image: PNG takes uint8 or uint16 images with 1, 3 or 4 channels, "
            f"got {image.dtype} with shape {image.shape}"
        )
    if image.dtype == np.uint16 and channels > 1:
        return _encode_png16(image)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image[:, :, 0] if channels == 1 else image)).save(
        buffer, format="PNG"
    )
    return buffer.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _encode_png16(image: np.ndarray) -> bytes:
    """Minimal 16-bit PNG writer: one IDAT, every row with filter 2 ("Up")."""
    height, width, channels = image.shape
    rows = image.astype(">u2").view(np.uint8).reshape(height, width * channels * 2)
    filtered = np.empty((height, rows.shape[1] + 1), np.uint8)
    filtered[:, 0] = 2
    filtered[:, 1:] = rows
    filtered[1:, 1:] -= rows[:-1]  # uint8 arithmetic wraps mod 256, as PNG specifies
    header = struct.pack(">IIBBBBB", width, height, 16, _PNG_COLOR_TYPES[channels], 0, 0, 0)
    return b"".join(
        (
            _PNG_MAGIC,
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", zlib.compress(filtered.tobytes(), 6)),
            _png_chunk(b"IEND", b""),
        )
    )


def _decode_png16_color(data: bytes, key: str) -> np.ndarray:
    """Reads a 16-bit RGB or RGBA PNG exactly (see the module docstring)."""
    idat: list[bytes] = []
    width = height = color_type = interlace = 0
    pos = len(_PNG_MAGIC)
    try:
        while pos + 8 <= len(data):
            length, kind = struct.unpack_from(">I4s", data, pos)
            payload = data[pos + 8 : pos + 8 + length]
            if kind == b"IHDR":
                width, height, _, color_type, _, _, interlace = struct.unpack(">IIBBBBB", payload)
            elif kind == b"IDAT":
                idat.append(payload)
            elif kind == b"IEND":
                break
            pos += 12 + length
        mode = "RGB" if color_type == 2 else "RGBA"
        if width * height > (Image.MAX_IMAGE_PIXELS or width * height):
            raise ValueError(f"{width}x{height} pixels exceeds PIL.Image.MAX_IMAGE_PIXELS")
        compressed, size = b"".join(idat), (width, height)
        high, low = (
            np.asarray(Image.frombytes(mode, size, compressed, "zip", raw, interlace))
            for raw in (f"{mode};16B", f"{mode};16L")
        )
    except (struct.error, OSError, ValueError) as e:
        raise DataError(f"image {key!r}: cannot decode 16-bit PNG: {e}") from e
    return (high.astype(np.uint16) << 8) | low


def _header_size(data: bytes, fmt: str | None, key: str) -> tuple[int, int]:
    """``(height, width)`` from the image header alone, without decoding pixels."""
    if fmt == "png" and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack_from(">II", data, 16)
        return height, width
    if fmt == "jpeg":
        try:
            height, width, _, _ = simplejpeg.decode_jpeg_header(data)
            return height, width
        except ValueError:
            pass  # Pillow reads some headers simplejpeg rejects
    try:
        # Image.open reads the header only; pixels are decoded by load().
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(
            f"image {key!r}: cannot read the {fmt or 'unknown-format'} header "
            f"({len(data)} bytes): {e}"
        ) from e
    return height, width


def _png_header(data: bytes) -> tuple[int, int]:
    """(bit depth, color type) from a PNG's IHDR, or (0, 0) if it is not there."""
    if len(data) < 26 or data[12:16] != b"IHDR":
        return 0, 0
    return data[24], data[25]


def _decode_with_pillow(data: bytes, key: str, fmt: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            mode = image.mode
            if mode.startswith("I;16"):
                return np.asarray(image).astype(np.uint16)[:, :, None]
            if mode in ("P", "PA"):
                has_alpha = mode == "PA" or "transparency" in image.info
                converted = image.convert("RGBA" if has_alpha else "RGB")
            elif mode in ("1", "L"):
                converted = image.convert("L")
            elif mode in ("RGB", "RGBA", "LA"):
                converted = image
            elif mode in ("CMYK", "YCbCr"):
                converted = image.convert("RGB")
            else:
                raise DataError(f"image {key!r}: unsupported {fmt} pixel mode {mode!r}")
            pixels = np.asarray(converted)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"image {key!r}: cannot decode {fmt} data ({len(data)} bytes): {e}") from e
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def _decode_jpeg(data: bytes, key: str, fast_dct: bool = False) -> np.ndarray:
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
        if colorspace.upper() not in ("GRAY", "YCBCR", "RGB"):
            return _decode_with_pillow(data, key, "jpeg")  # CMYK / YCCK
        gray = colorspace.upper() == "GRAY"
        pixels = simplejpeg.decode_jpeg(
            data, colorspace="GRAY" if gray else "RGB", fastdct=fast_dct
        )
        return np.asarray(pixels).reshape(height, width, 1 if gray else 3)
    except ValueError:  # simplejpeg rejects some files Pillow reads (or reports them)
        return _decode_with_pillow(data, key, "jpeg")


def decode_image(
    data: bytes,
    expected_shape: tuple[int, ...],
    dtype: Any = np.uint8,
    key: str = "image",
    dct_method: Literal["INTEGER_ACCURATE", "INTEGER_FAST"] = "INTEGER_ACCURATE",
) -> np.ndarray:
    """Decodes JPEG or PNG bytes into an ``(H, W, C)`` array of ``dtype``.

    Empty ``data`` decodes to zeros of ``expected_shape`` (T2R's convention for a
    missing image). The data must match exactly: no resizing, no channel or depth
    conversion. The header's height and width are checked before any pixel is
    decoded, so memory and time stay bounded by ``expected_shape`` whatever the
    data claims.

    Args:
        data: the encoded image; the format is detected from its magic bytes.
        expected_shape: ``(H, W, C)``.
        dtype: uint8, or uint16 for 16-bit PNG (numpy or torch dtype).
        key: the feature name, used in error messages.
        dct_method: JPEG's inverse DCT, named as TensorFlow names it:
            ``'INTEGER_ACCURATE'`` (libjpeg's islow; what Pillow gives) or
            ``'INTEGER_FAST'`` (ifast; what ``tf.image.decode_jpeg`` and tfds give
            by default). They differ by a few levels per pixel. The rare JPEGs
            simplejpeg cannot read go to Pillow, which is always INTEGER_ACCURATE.

    Raises:
        DataError: undecodable data, or a shape or bit depth other than expected,
            naming ``key`` with expected and actual values.
        ValueError: ``dtype`` or ``expected_shape`` is not an image spec.
    """
    np_dtype = _numpy_dtype(dtype)
    shape = tuple(int(d) for d in expected_shape)
    if np_dtype not in (np.uint8, np.uint16) or len(shape) != 3:
        raise ValueError(
            f"image {key!r}: images decode to (H, W, C) uint8 or uint16, "
            f"not shape {shape} of {np_dtype}"
        )
    if len(data) == 0:
        return np.zeros(shape, np_dtype)
    data = bytes(data)
    fmt = detect_image_format(data)
    # The header is checked before decoding, so what a record claims never costs
    # more memory or time than an image of the expected size.
    height, width = _header_size(data, fmt, key)
    if (height, width) != shape[:2]:
        raise DataError(
            f"image {key!r}: expected shape {shape}, but the {fmt or 'image'} header says "
            f"{height}x{width} pixels (height x width); not decoding it"
        )
    if dct_method not in ("INTEGER_ACCURATE", "INTEGER_FAST"):
        raise ValueError(
            f"image {key!r}: dct_method must be 'INTEGER_ACCURATE' or 'INTEGER_FAST', "
            f"got {dct_method!r}"
        )
    if fmt == "jpeg":
        pixels = _decode_jpeg(data, key, fast_dct=dct_method == "INTEGER_FAST")
    elif fmt == "png":
        depth, color_type = _png_header(data)
        if depth == 16 and color_type in (2, 6):
            pixels = _decode_png16_color(data, key)
        elif depth == 16 and color_type == 4:
            raise DataError(f"image {key!r}: 16-bit gray+alpha PNG is not supported")
        else:
            pixels = _decode_with_pillow(data, key, "png")
    else:
        pixels = _decode_with_pillow(data, key, "unknown-format")
    if pixels.dtype != np_dtype:
        raise DataError(
            f"image {key!r}: expected {np_dtype} pixels, but the {fmt or 'image'} data "
            f"holds {pixels.dtype}"
        )
    if pixels.shape != shape:
        raise DataError(
            f"image {key!r}: expected shape {shape}, but the {fmt or 'image'} data "
            f"decodes to {pixels.shape}"
        )
    return np.ascontiguousarray(pixels)
