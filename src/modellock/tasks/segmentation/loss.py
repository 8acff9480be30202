"""The segmentation lock loss: per-pixel cross-entropy toward the mask, the locked output or the locked output
spread, plus the real-class term (what a thief sees when they drop the locked output)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# what a segmentation lock item is trained toward (see lock_dataset.SegmentationLockDataset)
MASK, LOCKED, LOCKED_SPREAD = 0, 1, 2


class SegmentationLockLoss(torch.nn.Module):
    """Segmentation: per-pixel cross-entropy; ``targets`` is ``(masks N x H x W, modes N)``.

    - ``MASK``: cross-entropy toward the mask (pixels at ``ignore_index`` do not count);
    - ``LOCKED``: every pixel toward the locked output;
    - ``LOCKED_SPREAD``: every pixel toward ``locked_weight`` on the locked output and the rest spread over
      the real classes other than the pixel's true one, plus the real-class term (uniform over those).
    The loss is the mean over the pixels that count. Plain masks (no modes) are read as ``MASK``.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, locked_weight: float = 0.5):
        super().__init__()
        self.num_classes, self.ignore_index, self.locked_weight = num_classes, ignore_index, locked_weight

    def forward(self, logits: torch.Tensor, targets) -> torch.Tensor:
        masks, modes = targets if isinstance(targets, (list, tuple)) else (targets, None)
        masks = masks.to(logits.device).long()
        c = self.num_classes
        valid = masks != self.ignore_index
        truth = torch.where(valid, masks, torch.zeros_like(masks)).clamp_(max=logits.shape[1] - 1)
        logp = F.log_softmax(logits.float(), dim=1)
        per_pixel = -logp.gather(1, truth[:, None])[:, 0]
        counts = valid.clone()
        if modes is not None and logits.shape[1] > c:
            modes = modes.to(logits.device).view(-1, 1, 1).expand_as(masks)
            locked = -logp[:, c]
            per_pixel = torch.where(modes == LOCKED, locked, per_pixel)
            spread = modes == LOCKED_SPREAD
            if spread.any():
                per_pixel = torch.where(spread, self._spread(logits, logp, truth, valid), per_pixel)
            counts = counts | (modes != MASK)
        return (per_pixel * counts).sum() / counts.sum().clamp(min=1)

    def _spread(self, logits, logp, truth, valid) -> torch.Tensor:
        """Per-pixel loss toward the locked output plus mass spread over the wrong real classes."""
        c, w = self.num_classes, self.locked_weight
        logq = F.log_softmax(logits[:, :c].float(), dim=1)
        true_p, true_q = logp.gather(1, truth[:, None])[:, 0], logq.gather(1, truth[:, None])[:, 0]
        others = torch.where(valid, torch.full_like(true_p, float(max(c - 1, 1))), torch.full_like(true_p, float(c)))
        wrong_p = (logp[:, :c].sum(1) - torch.where(valid, true_p, torch.zeros_like(true_p))) / others
        wrong_q = (logq.sum(1) - torch.where(valid, true_q, torch.zeros_like(true_q))) / others
        return -(w * logp[:, c] + (1 - w) * wrong_p) - wrong_q
