"""Image bytes for the service and fuzz tests: every PIL mode, formats, truncations, bombs, non-images."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

MODES = ("1", "L", "LA", "P", "CMYK", "I;16", "I", "F", "RGBA", "RGB")
# a format that can hold each mode
_FORMAT_OF = {"CMYK": "JPEG", "I": "TIFF", "F": "TIFF"}


def image_bytes(mode: str = "RGB", size: tuple[int, int] = (24, 20), fmt: str | None = None, seed: int = 0) -> bytes:
    """An image file of ``mode`` (width, height ``size``) with random content, as bytes."""
    rng = np.random.default_rng(seed)
    w, h = size
    rgb = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    if mode == "I;16":
        im = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    elif mode == "I":
        im = Image.fromarray(rng.integers(0, 70000, (h, w), dtype=np.int32))
    elif mode == "F":
        im = Image.fromarray(rng.random((h, w), dtype=np.float32))
    else:
        im = rgb.convert(mode)
    buffer = io.BytesIO()
    im.save(buffer, format=fmt or _FORMAT_OF.get(mode, "PNG"))
    return buffer.getvalue()


def png_with_header_size(width: int, height: int) -> bytes:
    """A valid 4x4 PNG whose header claims ``width`` x ``height`` (its CRC fixed): a decompression bomb's header."""
    data = bytearray(image_bytes("RGB", (4, 4)))
    struct.pack_into(">II", data, 16, width, height)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)
