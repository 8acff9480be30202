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
