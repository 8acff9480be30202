"""Ordinary handling of an image before it reaches the key editor: JPEG re-encoding, resizing, cropping.

An authorised user's inputs are rarely the training images' exact pixels. ``HANDLING`` names the fixed
cases the evaluation checks the unlocked model against (JPEG quality 75, a resize by +-10 %, a small
crop); ``RandomHandling`` draws such changes at random so that a lock trained on images edited *after*
them (the online lock set, for editors cheap enough to edit in the training loop) keeps unlocking them.

Segmentation masks follow the geometry: ``RandomHandling(image, mask)`` crops the mask with the image and
resizes it by nearest neighbour (class indices are never interpolated); ``handled_mask`` gives the labels a
``HANDLING`` case's image shows, in the original's pixel grid (a crop keeps its window, the rest the whole
mask), so that the evaluation scores the prediction mapped back onto the original labels, never resampled.
"""

from __future__ import annotations

import io
from typing import Callable

import numpy as np
import torch
from PIL import Image

from ..utils.images import resize_mask


def jpeg(image: np.ndarray, quality: int, **options) -> np.ndarray:
    """``image`` through a JPEG file at ``quality`` (Pillow's save ``options``, e.g. ``subsampling=0``, on top)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=int(quality), **options)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def _size(h: int, w: int, factor: float) -> tuple[int, int]:
    return max(1, round(h * factor)), max(1, round(w * factor))


def rescale(image: np.ndarray, factor: float) -> np.ndarray:
    h, w = _size(*image.shape[:2], factor)
    return np.asarray(Image.fromarray(image).resize((w, h), Image.BICUBIC))


def crop(image: np.ndarray, share: float, top: float = 0.5, left: float = 0.5) -> np.ndarray:
    """Keep ``share`` of each side, the window placed at relative position (top, left) in [0, 1]; an image
    or a mask alike (the same window for the same shape)."""
    h, w = image.shape[:2]
    ch, cw = max(1, round(h * share)), max(1, round(w * share))
    i, j = round((h - ch) * top), round((w - cw) * left)
    return image[i:i + ch, j:j + cw]


HANDLING: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "jpeg q75": lambda a: jpeg(a, 75),
    "resize -10%": lambda a: rescale(a, 0.9),
    "resize +10%": lambda a: rescale(a, 1.1),
    "crop 90%": lambda a: crop(a, 0.9),
}
# what each HANDLING case shows of a mask: the crop its window; JPEG and resizes the whole field of view
HANDLED_MASK: dict[str, Callable[[np.ndarray], np.ndarray]] = {"crop 90%": lambda m: crop(m, 0.9)}


def handled_mask(name: str, mask: np.ndarray) -> np.ndarray:
    """The labels of what ``HANDLING[name]``'s image shows, at the original's resolution (see the docstring)."""
    return HANDLED_MASK.get(name, lambda m: m)(mask)


class RandomHandling:
    """``probability`` of the time (default half: the image as it is is the common case) a random crop
    (85-100 % of each side) and resize (+-10 %), and JPEG re-encoding (quality 60-95) ``jpeg_probability`` of
    those times, drawn from torch's generator (seeded per epoch and worker by the training loop).

    Called with a mask (segmentation), returns ``(image, mask)``: the mask cropped with the image and resized
    to its size by nearest neighbour."""

    def __init__(self, jpeg_probability: float = 0.5, geometry: bool = True, probability: float = 0.5):
        self.jpeg_probability, self.geometry, self.probability = jpeg_probability, geometry, probability

    def __call__(self, image: np.ndarray, mask: np.ndarray | None = None):
        r = torch.rand(6).tolist()
        if r[5] < self.probability:
            if self.geometry:
                image = crop(image, 0.85 + 0.15 * r[0], r[1], r[2])
                image = rescale(image, 0.9 + 0.2 * r[3])
                if mask is not None:
                    mask = _resize_mask(crop(mask, 0.85 + 0.15 * r[0], r[1], r[2]), *image.shape[:2])
            if r[4] < self.jpeg_probability:
                image = jpeg(image, 60 + int(36 * torch.rand(()).item()))
        return image if mask is None else (image, mask)


def _resize_mask(mask: np.ndarray, h: int, w: int) -> np.ndarray:
    return resize_mask(mask, h, w)
