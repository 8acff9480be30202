"""The editor interface: a batch of images in, edited and blended images out, each its own size."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict
from typing import Sequence

import numpy as np

from ..utils.images import ImageLike, blend, resize, to_uint8_rgb


class Editor(ABC):
    """Base class. Subclasses implement ``edit_batch`` on same-sized uint8 arrays.

    ``edit`` resizes each image to the key's resolution (0 = keep its size), edits in batches of
    ``batch_size``, resizes the edit back and blends it with the original by the key's ``alpha``.
    An image's edit never depends on the batch it is in.
    """

    name: str = ""
    version: int = 1  # bump when the same key would edit differently; names caches and locked models
    key_defaults: dict = {}  # fields of a new key that differ from the paper's defaults
    param_types: dict = {}  # editor-specific key settings (the key's [params] table) and their types
    default_batch_size: int = 64
    # False for edits that random crops and flips would break (block-wise transforms): the lock then
    # trains on its edits without geometric augmentation.
    geometric_augmentation: bool = True
    # True for editors cheap enough to edit every training batch in the loop (the CPU editors): the lock then
    # edits online, after random crops, resizes and JPEG of the input, instead of through the edit cache
    edits_in_loop: bool = False
    # CPU editors: at most this many pixels per edit_batch call (None: batch_size images whatever their size)
    max_batch_pixels: int | None = None

    @classmethod
    def resolve_for_model(cls, key, model, image_size: int):
        """The key as this editor applies it to ``model`` (e.g. a block size that follows its patches)."""
        return key

    @classmethod
    def attack_family(cls, key):
        """A differentiable ``torch.nn.Module`` of this editor's parameter family (``[0, 1]`` pixels
        ``B x 3 x H x W`` in, edited and blended pixels out), started at ``key``'s parameters; None when
        the editor declares none. The ``editor-family-adapter`` attack fits it by gradient: a thief knows
        the code, so an editor whose key space a small family covers is only as safe as that fit is hard."""
        return None

    def __init__(self, key, device: str | None = None, batch_size: int | None = None):
        self.key = key
        self.device = device
        self.batch_size = batch_size or self.default_batch_size

    @abstractmethod
    def edit_batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Edit same-sized HxWx3 uint8 arrays; return arrays of the same size (no blending)."""

    def edit(self, images: Sequence[ImageLike]) -> list[np.ndarray]:
        originals = [to_uint8_rgb(im) for im in images]
        res = self.key.resolution
        work = [resize(a, (res, res)) if res else a for a in originals]
        groups: dict[tuple, list[int]] = defaultdict(list)  # batch only same-sized images together
        for i, a in enumerate(work):
            groups[a.shape].append(i)
        edited: list[np.ndarray | None] = [None] * len(work)
        for shape, idx in groups.items():
            step = self.batch_size
            if self.max_batch_pixels:  # large images in smaller batches: memory stays bounded
                step = max(1, min(step, self.max_batch_pixels // (shape[0] * shape[1])))
            for start in range(0, len(idx), step):
                chunk = idx[start:start + step]
                for i, out in zip(chunk, self.edit_batch([work[i] for i in chunk])):
                    edited[i] = out
        return [
            blend(orig, resize(e, orig.shape[:2]), self.key.alpha) for orig, e in zip(originals, edited)
        ]

    __call__ = edit

    def close(self) -> None:
        """Release models and memory (no-op for light editors)."""
