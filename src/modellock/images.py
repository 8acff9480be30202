"""Image helpers shared by every stage: uint8 RGB arrays, resizing, the paper's blend, atomic PNG writes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image

from .errors import DataError, ImageInputError

ImageLike = Union[np.ndarray, Image.Image]
ImageInput = Union[str, os.PathLike, np.ndarray, Image.Image]  # what predictors accept, alone or in a list


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


_EXPECTED = "expected a file path (str or pathlib.Path), a PIL image or an HxWxC array, or a list of them"


def as_image_list(images) -> list:
    """``images`` as a list: one image (a file path, PIL image or HxW[xC] array) or a sequence of them
    (a list, a tuple, or an NxHxWxC array); ImageInputError for anything else."""
    if is_single_image(images):
        return [images]
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images)
    if isinstance(images, (list, tuple)):
        for i, item in enumerate(images):
            if not is_single_image(item):
                raise ImageInputError(f"image {i}: {_describe(item)} is not an image; {_EXPECTED}")
        return list(images)
    raise ImageInputError(f"{_describe(images)} is not an image or a list of images; {_EXPECTED}")


def is_single_image(x) -> bool:
    """Whether ``x`` is one image (a path, a PIL image, an HxW or HxWxC array), not a collection."""
    return isinstance(x, (str, os.PathLike, Image.Image)) or (isinstance(x, np.ndarray) and x.ndim in (2, 3))


def _describe(x) -> str:
    return f"an array of shape {x.shape}" if isinstance(x, np.ndarray) else f"an object of type {type(x).__name__}"


def shrunk_size(size: tuple[int, int], short_side: int | None) -> tuple[int, int]:
    """(width, height) with the short side scaled down to ``short_side``; unchanged when it is no longer."""
    w, h = size
    if not short_side or min(w, h) <= short_side:
        return w, h
    scale = short_side / min(w, h)
    return max(short_side, round(w * scale)), max(short_side, round(h * scale))


def read_input_image(image: ImageInput, short_side: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """One predictor input as an HxWx3 uint8 array whose short side is at most ``short_side``, and the
    input's own (height, width).

    A large image is shrunk before anything else touches its pixels at full size: a JPEG file is decoded
    at a reduced scale (``Image.draft``), then resized with the bilinear filter of the model's transforms.
    """
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise DataError(f"{path}: no such image file")
        try:
            with Image.open(path) as im:
                size = im.size
                if short_side:
                    im.draft("RGB", shrunk_size(size, short_side))  # JPEG: decode at 1/2..1/8 scale
                return _shrink(im, size, short_side), (size[1], size[0])
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise DataError(f"{path}: cannot read image ({type(e).__name__}: {e})") from None
    if isinstance(image, Image.Image):
        return _shrink(image, image.size, short_side), (image.height, image.width)
    a = np.asarray(image)
    if not (a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3):
        try:
            a = to_uint8_rgb(a)  # grey, RGBA or float pixels: converted at full size first
        except ValueError as e:
            raise ImageInputError(f"{_describe(image)}: {e}") from None
    return _shrink(Image.fromarray(np.ascontiguousarray(a)), (a.shape[1], a.shape[0]), short_side), a.shape[:2]


def _shrink(im: Image.Image, size: tuple[int, int], short_side: int | None) -> np.ndarray:
    """A PIL image (perhaps already decoded at a draft scale) resized to ``shrunk_size(size)``, as uint8 RGB."""
    target = shrunk_size(size, short_side)
    im = im.convert("RGB") if im.mode != "RGB" else im
    if im.size != target:
        im = im.resize(target, Image.BILINEAR)
    return np.asarray(im, dtype=np.uint8).copy()


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
