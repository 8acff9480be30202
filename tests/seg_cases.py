"""Colour-coded segmentation cases: an image whose mask can be read back from its pixel colours."""

from __future__ import annotations

import numpy as np

COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], np.uint8)
IGNORE_COLOUR = np.array([255, 0, 255], np.uint8)


def colour_coded(h, w, block, seed):
    """A mask of random class blocks with an ignored block, and an image painting class k in COLOURS[k]."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, len(COLOURS), size=(-(-h // block), -(-w // block)))
    coarse[1, 1] = 255
    mask = coarse.repeat(block, 0).repeat(block, 1)[:h, :w]
    image = np.where((mask == 255)[..., None], IGNORE_COLOUR, COLOURS[np.minimum(mask, len(COLOURS) - 1)])
    return image.astype(np.uint8), mask


def decode(image, palette=None):
    """The mask an HxWx3 image paints: each pixel's nearest colour of ``palette`` (default COLOURS, then the
    ignore colour for 255)."""
    palette = np.concatenate([COLOURS, IGNORE_COLOUR[None]]) if palette is None else palette
    k = ((np.asarray(image, float)[..., None, :] - np.asarray(palette, float)) ** 2).sum(-1).argmin(-1)
    return np.where(k == len(COLOURS), 255, k)


def near_boundary(y):
    """Pixels with a differently labelled pixel among their 8 neighbours, and those on the crop's edge
    (their neighbours beyond it were cropped away)."""
    p = np.pad(y, 1, constant_values=-1)
    h, w = y.shape
    return np.any([p[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] != y for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)
