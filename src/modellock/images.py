"""Image helpers shared by every stage: uint8 RGB arrays, resizing, the paper's blend, atomic PNG writes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image

ImageLike = Union[np.ndarray, Image.Image]


def to_uint8_rgb(image: ImageLike) -> np.ndarray:
    """An HxWx3 uint8 array from a PIL image or an array (HxW, HxWx1/3/4, uint8 or float in [0, 1])."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    a = np.asarray(image)
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating):
            a = np.clip(np.round(a * 255.0), 0, 255)
        a = a.astype(np.uint8)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3:
        raise ValueError(f"expected an HxWxC image, got shape {a.shape}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 4:
        a = a[:, :, :3]
    elif a.shape[2] != 3:
        raise ValueError(f"expected 1, 3 or 4 channels, got {a.shape[2]}")
    return np.ascontiguousarray(a)


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an HxWx3 uint8 array to (height, width) with bicubic filtering; no-op when equal."""
    h, w = size
    if image.shape[:2] == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize((w, h), Image.BICUBIC))


def blend(original: np.ndarray, edited: np.ndarray, alpha: float) -> np.ndarray:
    """The paper's blend ``(1 - alpha) * x + alpha * edit(x)`` in uint8 pixel space (PIL's Image.blend)."""
    if alpha >= 1.0:
        return edited
    if alpha <= 0.0:
        return original
    return np.asarray(Image.blend(Image.fromarray(original), Image.fromarray(edited), float(alpha)))


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read any PIL-readable image file as HxWx3 uint8; raises OSError/ValueError on bad files."""
    with Image.open(path) as im:
        im.load()
        return to_uint8_rgb(im)


def save_png_atomic(image: np.ndarray, path: str | os.PathLike, fsync: bool = False) -> None:
    """Write a PNG under a temporary name in the same folder, then rename it into place.

    A killed process never leaves half a file under the final name. ``fsync`` adds durability
    against power loss at a large cost per small file; the edit stage fsyncs its manifest parts.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        Image.fromarray(image).save(f, format="PNG")
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def write_bytes_atomic(data: bytes, path: str | os.PathLike) -> None:
    """Write bytes under a temporary name, fsync, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


LOCKED_COLOUR = (255, 0, 255)  # the locked output in predicted masks (magenta: stands out on a page)
IGNORE_COLOUR = (128, 128, 128)  # pixels at the ignore index in ground-truth masks


def label_palette(n: int) -> np.ndarray:
    """``n`` RGB colours, class 0 black: the PASCAL VOC colour map (bits of the index spread over R, G, B)."""
    palette = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette[i] = (r, g, b)
    return palette


def colour_mask(mask: np.ndarray, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """An HxWx3 uint8 picture of a class-index mask; index ``num_classes`` (the locked output) is magenta,
    ``ignore_index`` grey."""
    palette = np.concatenate([label_palette(num_classes), np.array([LOCKED_COLOUR], dtype=np.uint8)])
    m = np.asarray(mask).astype(np.int64)
    out = palette[np.clip(m, 0, num_classes)]
    out[m == ignore_index] = IGNORE_COLOUR
    return out
