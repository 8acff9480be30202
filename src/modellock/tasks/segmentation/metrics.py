"""Segmentation metrics: a confusion matrix with per-class IoU, mIoU and pixel accuracy.

Predictions outside ``[0, num_classes)`` (e.g. a locked model's extra "locked" output) land in an extra
"other" column: a miss for the target's class, a false positive for none. Target pixels equal to
``ignore_index`` are skipped. Everything runs on CPU tensors with ``torch.bincount``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from ...errors import ModelLockError


class ConfusionMatrix:
    """``matrix[t, p]`` counts pixels of target class ``t`` predicted as ``p``; column ``num_classes`` is "other"."""

    def __init__(self, num_classes: int, ignore_index: int = 255):
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ModelLockError(f"num_classes must be a positive integer, not {num_classes!r}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes + 1, dtype=torch.long)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Count one batch of predicted and target class maps (same shape, any shape)."""
        if pred.shape != target.shape:
            raise ModelLockError(f"prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
        k = self.num_classes
        pred, target = pred.detach().cpu().reshape(-1).long(), target.detach().cpu().reshape(-1).long()
        keep = target != self.ignore_index
        pred, target = pred[keep], target[keep]
        bad = (target < 0) | (target >= k)
        if bad.any():
            raise ModelLockError(
                f"target class {int(target[bad][0])} is outside 0..{k - 1} (ignore_index is {self.ignore_index})"
            )
        pred = torch.where((pred >= 0) & (pred < k), pred, k)
        counts = torch.bincount(target * (k + 1) + pred, minlength=k * (k + 1))
        self.matrix += counts.reshape(k, k + 1)

    def iou(self) -> list[float | None]:
        """Per-class intersection over union; None for a class in neither target nor prediction."""
        m = self.matrix
        hits = m.diagonal()
        union = m.sum(1) + m[:, : self.num_classes].sum(0) - hits
        return [float(h) / float(u) if u else None for h, u in zip(hits.tolist(), union.tolist())]

    def miou(self) -> float:
        """Mean IoU over the classes that occur (in target or prediction); nan when none does."""
        present = [v for v in self.iou() if v is not None]
        return sum(present) / len(present) if present else math.nan

    def pixel_accuracy(self) -> float:
        """Share of counted pixels predicted right; nan before any pixel was counted."""
        total = int(self.matrix.sum())
        return float(self.matrix.diagonal().sum()) / total if total else math.nan

    def to_dict(self, class_names: Sequence[str]) -> dict:
        """``{"miou", "pixel_accuracy", "per_class_iou": {name: iou or None}}``; nan becomes None (JSON-able)."""
        names = list(class_names)
        if len(names) != self.num_classes:
            raise ModelLockError(f"{len(names)} class names given for a {self.num_classes}-class confusion matrix")
        return {
            "miou": _or_none(self.miou()),
            "pixel_accuracy": _or_none(self.pixel_accuracy()),
            "per_class_iou": dict(zip(names, self.iou())),
        }


def _or_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def majority_class_miou(class_pixel_counts: Sequence[int] | torch.Tensor) -> float:
    """mIoU of predicting the most frequent class everywhere (a baseline): ``max / total / classes present``.

    The majority class's IoU is ``count_max / total``, every other class with pixels scores 0, and classes
    without pixels are left out of the mean; nan when there are no pixels.
    """
    counts = torch.as_tensor(class_pixel_counts, dtype=torch.long).reshape(-1)
    if (counts < 0).any():
        raise ModelLockError(f"class pixel counts must not be negative: {counts.tolist()}")
    present = int((counts > 0).sum())
    if not present:
        return math.nan
    return float(counts.max()) / float(counts.sum()) / present


def update_from_logits(cm: ConfusionMatrix, logits: torch.Tensor, targets, num_classes: int | None = None) -> None:
    """Upsample each item's ``K x h x w`` logits bilinearly to its mask's size, take the argmax, update ``cm``.

    ``targets`` is a list of ``H_i x W_i`` masks or an ``N x H x W`` tensor. With ``num_classes`` the argmax
    runs over the first ``num_classes`` outputs only (e.g. dropping a locked model's extra output).
    """
    logits = logits.detach().cpu().float()
    if num_classes is not None:
        logits = logits[:, :num_classes]
    if len(targets) != len(logits):
        raise ModelLockError(f"{len(logits)} logit maps but {len(targets)} target masks")
    if torch.is_tensor(targets) and targets.dim() == 3:  # one size for all: a single batched resize
        cm.update(_resized_argmax(logits, targets.shape[-2:]), targets)
        return
    for item, mask in zip(logits, targets):
        mask = torch.as_tensor(mask)
        cm.update(_resized_argmax(item[None], mask.shape[-2:]).reshape(mask.shape), mask)


def _resized_argmax(logits: torch.Tensor, size) -> torch.Tensor:
    if tuple(logits.shape[-2:]) != tuple(size):
        logits = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
    return logits.argmax(1)
