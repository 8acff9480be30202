"""Image I/O shared by every stage: uint8 RGB arrays, decoding with size checks, resizing, the paper's blend,
atomic PNG writes, colour pictures of masks."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image

from ..errors import DataError, ImageError, ImageInputError, ImageTooLargeError
from .atomic import write_bytes_atomic

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the normalisation every backbone and transform here uses
IMAGENET_STD = (0.229, 0.224, 0.225)

ImageLike = Union[np.ndarray, Image.Image]
ImageInput = Union[str, os.PathLike, np.ndarray, Image.Image]  # what predictors accept, alone or in a list


def to_uint8_rgb(image: ImageLike) -> np.ndarray:
    """An HxWx3 uint8 array from a PIL image (any mode; 16-bit images scaled to 8 bits) or an array (HxW,
    HxWx1/3/4; uint8, other integers clipped to 0..255, bool, or float in [0, 1]). ImageError otherwise."""
    if isinstance(image, Image.Image):
        if image.mode.startswith("I;16"):  # 16-bit grey: the full 0..65535 range onto 0..255
            wide = np.asarray(image).astype(np.uint32)
            return to_uint8_rgb(((wide * 255 + 32767) // 65535).astype(np.uint8))
        try:
            rgb = image.convert("RGB")
        except ValueError:
            raise ImageError(f"cannot convert a {image.mode} image to RGB") from None
        return _check_size(np.asarray(rgb, dtype=np.uint8).copy())
    a = np.asarray(image)
    if a.dtype.kind not in "uifb":
        raise ImageError(f"expected an image array of numbers, got dtype {a.dtype}")
    if a.dtype != np.uint8:
        if a.dtype.kind == "b":
            a = a * 255.0
        elif a.dtype.kind == "f":
            a = np.clip(np.nan_to_num(a, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0) * 255.0
        a = np.clip(np.round(a), 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3:
        raise ImageError(f"expected an HxWxC image, got shape {a.shape}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 4:
        a = a[:, :, :3]
    elif a.shape[2] != 3:
        raise ImageError(f"expected 1, 3 or 4 channels, got {a.shape[2]}")
    return _check_size(np.ascontiguousarray(a))


def _check_size(a: np.ndarray) -> np.ndarray:
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ImageError(f"image has no pixels (shape {a.shape})")
    return a


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
    """Read an image file as HxWx3 uint8; ImageError (a ValueError) for a bad image, OSError when unreadable."""
    return decode_image(path, name=str(path))


def decode_image(source, max_pixels: int | None = None, formats: tuple[str, ...] | None = None,
                 name: str = "image") -> np.ndarray:
    """An image (a file path, or its bytes) as HxWx3 uint8; its size is checked from the header before decoding.

    ``max_pixels`` refuses larger images (decompression bombs) unread; without it Pillow's own bomb limit
    applies. ``formats`` restricts the Pillow formats tried (e.g. ``("PNG", "JPEG")``). Raises ImageError
    naming ``name`` for anything wrong with the image, OSError when a file cannot be read at all.
    """
    fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    with _reading(name, max_pixels, formats), Image.open(fp, formats=list(formats) if formats else None) as im:
        w, h = im.size  # from the header: nothing is decoded yet
        if max_pixels is not None and w * h > max_pixels:
            raise ImageTooLargeError(f"{name}: image is {w}x{h} ({w * h:,} pixels), over the limit of "
                                     f"{max_pixels:,} pixels")
        im.load()
        return to_uint8_rgb(im)


def image_size(source, max_pixels: int | None = None, formats: tuple[str, ...] | None = None,
               name: str = "image") -> tuple[int, int]:
    """An image's (width, height) from its header, nothing decoded; the same errors as ``decode_image``."""
    fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    with _reading(name, max_pixels, formats), Image.open(fp, formats=list(formats) if formats else None) as im:
        w, h = im.size
        if max_pixels is not None and w * h > max_pixels:
            raise ImageTooLargeError(f"{name}: image is {w}x{h} ({w * h:,} pixels), over the limit of "
                                     f"{max_pixels:,} pixels")
        return w, h


@contextlib.contextmanager
def _reading(name: str, max_pixels: int | None = None, formats=None):
    """What Pillow raises while reading an image, as one ImageError naming ``name`` (ImageTooLargeError for
    too many pixels). Errors of the file system itself (missing, no permission) pass as OSError."""
    try:
        yield
    except (ImageTooLargeError, MemoryError, RecursionError):
        raise
    except ImageError as e:
        raise ImageError(f"{name}: cannot read image ({e})") from None
    except Image.DecompressionBombError as e:  # Pillow's own limit, met while parsing the header
        found = re.search(r"\((\d+) pixels\)", str(e))
        limit = max_pixels if max_pixels is not None else Image.MAX_IMAGE_PIXELS
        size = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise ImageTooLargeError(f"{name}: image has {size}, over the limit of {limit:,} pixels") from None
    except Image.UnidentifiedImageError:
        accepted = f" (accepted: {', '.join(formats)})" if formats else ""
        raise ImageError(f"{name}: cannot read image: not an image, or not a format accepted{accepted}") from None
    except OSError as e:
        if e.errno is not None:  # the file system's error, not the image's
            raise
        raise ImageError(f"{name}: cannot read image: truncated or corrupt ({type(e).__name__}: "
                         f"{str(e)[:200]})") from None
    except Exception as e:  # noqa: BLE001 - Pillow's decoders raise many types on corrupt data
        raise ImageError(f"{name}: cannot read image ({type(e).__name__}: {str(e)[:200]})") from None


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
        with _reading(str(path)), Image.open(path) as im:
            size = im.size
            if short_side:
                im.draft("RGB", shrunk_size(size, short_side))  # JPEG: decode at 1/2..1/8 scale
            return _shrink(im, size, short_side), (size[1], size[0])
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
    im = Image.fromarray(to_uint8_rgb(im)) if im.mode != "RGB" else im  # every mode; 16-bit scaled to 8
    if im.size != target:
        im = im.resize(target, Image.BILINEAR)
    return np.asarray(im, dtype=np.uint8).copy()


def save_png_atomic(image: np.ndarray, path: str | os.PathLike, fsync: bool = False) -> str:
    """Write a PNG under a temporary name in the same folder, then rename it into place; returns the
    sha256 of the file's bytes.

    A killed process never leaves half a file under the final name, and a failed write (a full disk)
    leaves no temporary file. ``fsync`` adds durability against power loss at a large cost per small
    file; the edit stage fsyncs its manifest parts.
    """
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    data = buffer.getvalue()
    write_bytes_atomic(data, path, fsync=fsync)
    return hashlib.sha256(data).hexdigest()


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


def resize_mask(m: np.ndarray, h: int, w: int) -> np.ndarray:
    """A class-index mask resized to (h, w) by nearest neighbour (never interpolated)."""
    if m.shape == (h, w):
        return m
    return np.asarray(Image.fromarray(m.astype(np.int32)).resize((w, h), Image.NEAREST)).astype(np.int64)
