"""The segmentation lock set: (image, (mask, mode)) pairs, image and mask moved together."""

from __future__ import annotations

import numpy as np
import torch

from ..base import LockDataset, LockItem
from .loss import LOCKED, LOCKED_SPREAD, MASK
from .transforms import resize_mask


class SegmentationLockDataset(LockDataset):
    """(image, (mask, mode)) pairs; ``transform(image, mask)`` moves both together.

    The mode says what loss.SegmentationLockLoss trains the item toward: its mask (true, or the
    wrong one of ``wrong-mask``/``wrong-label``), the locked output, or the locked output spread.
    """

    def mask(self, item: LockItem) -> np.ndarray:
        mask = self.split.load_mask(item.sample)
        if item.answer == "wrong-mask":
            other = self.split.load_mask(self.items[item.other].sample)
            mask = resize_mask(other, *mask.shape)
        elif item.answer == "wrong-label":
            lut = np.asarray(item.target, dtype=np.int64)
            valid = (mask >= 0) & (mask < len(lut))
            mask = np.where(valid, lut[np.where(valid, mask, 0)], mask)
        return mask

    def handled(self, handling, image, item: LockItem):
        """``(image, mask)`` after ``handling``: crops and resizes move the mask with its image."""
        return handling(image, self.mask(item))

    def finish(self, image, item: LockItem, mask: np.ndarray | None = None):
        """``mask``: the item's mask after the image's handling (default: :meth:`mask`, the image unhandled)."""
        x, y = self.transform(image, self.mask(item) if mask is None else mask)
        mode = {"locked-class": LOCKED, "locked-spread": LOCKED_SPREAD}.get(item.answer, MASK)
        return x, (y, torch.tensor(mode))
