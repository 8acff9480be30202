"""The classification lock loss: cross-entropy toward the lock set's target distribution, plus a term over the
real classes alone (what a thief sees when they drop the locked output)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class LockLoss(torch.nn.Module):
    """Classification: cross-entropy toward a target distribution over all outputs, plus the real-class term.

    Rows with no mass on the real classes (``locked-class``) skip the second term.
    """

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(logits, target)
        if logits.shape[1] == self.num_classes:
            return loss
        real = target[:, : self.num_classes]
        mass = real.sum(dim=1)
        rows = mass > 0
        if rows.any():
            loss = loss + F.cross_entropy(logits[rows, : self.num_classes], real[rows] / mass[rows, None])
        return loss
