"""The watermark test: does a suspect give the wrong answers the owner's service gave on purpose?

``modellock serve --watermark DIR`` answers a keyed share of images with a wrong class and records them
(``utils/watermark_record.py``). The class answered is drawn uniformly among the ``K - 1`` classes other than the
model's own, by a secret independent of everything a model sees; so any model that never saw those answers
picks it with probability at most ``1 / (K - 1)`` per image, whatever its accuracy. The test counts the
recorded images on which the suspect answers the watermark class and sets the count against that chance with a
one-sided exact binomial test (``scipy.stats.binomtest``). A student distilled from the service's answers learnt
some of them: far more agreements than chance.

    from modellock.ownership.watermark import load_watermark, watermark_test
    result = watermark_test(load_watermark("marks/"), suspect, level=0.01)
"""

from __future__ import annotations

import math
import os

import numpy as np
from scipy.stats import binom, binomtest

from ..errors import ModelLockError
from ..utils.watermark_record import Entry, WatermarkFolder

STATISTIC = "watermark agreement"


class WatermarkRecord:
    """The records of a watermark folder: ``entries`` and the ``classes`` the service answered."""

    def __init__(self, folder: WatermarkFolder):
        self.folder = folder
        meta = folder.meta()
        self.task: str = str(meta.get("task"))
        self.classes: list[str] = list(meta["classes"])
        self.entries: list[Entry] = folder.entries()
        if not self.entries:
            raise ModelLockError(f"watermark folder {folder.path}: holds no watermarked query yet (the service "
                                 "records them as it answers)")

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def chance(self) -> float:
        """The most an independent model agrees with a watermark answer, per image: ``1 / (K - 1)``."""
        return 1.0 / (len(self.classes) - 1)


def load_watermark(path: str | os.PathLike) -> WatermarkRecord:
    """The record of ``modellock serve --watermark`` ``path``; ModelLockError when there is none."""
    return WatermarkRecord(WatermarkFolder.open(path))


def answered_classes(answers: np.ndarray, suspect, classes: list[str]) -> np.ndarray:
    """The owner's class index of each answer's top class (-1 for a class the owner has not): by name when the
    suspect names its classes (a service), else by position (a network with the owner's classes first)."""
    top = np.asarray(answers).argmax(1)
    names = list(getattr(suspect, "classes", None) or [])
    if names:
        index = {c: i for i, c in enumerate(classes)}
        return np.array([index.get(names[j], -1) if j < len(names) else -1 for j in top])
    if answers.shape[1] < len(classes):
        raise ModelLockError(f"{suspect.name}: answers {answers.shape[1]} classes; the watermark's service "
                             f"answered {len(classes)}")
    return np.where(top < len(classes), top, -1)


def watermark_test(record: WatermarkRecord, suspect, max_queries: int | None = None, level: float = 0.01) -> dict:
    """Ask ``suspect`` the recorded images (the first ``max_queries``, all when None) and test its agreement with
    the watermark answers against chance: statistic, threshold, p-value, score and verdict at ``level``."""
    n = len(record) if max_queries is None else min(len(record), int(max_queries))
    if n < 1:
        raise ModelLockError("the watermark test needs at least one query")
    entries = record.entries[:n]
    answers = np.asarray(suspect.answer([e.image for e in entries]), dtype=np.float64)
    if answers.ndim != 2 or len(answers) != n:
        raise ModelLockError(f"{suspect.name}: {n} images asked, answers of shape {answers.shape}")
    got = answered_classes(answers, suspect, record.classes)
    marks = np.array([e.answer for e in entries])
    agreed = int((got == marks).sum())
    return {**decide_watermark(agreed, n, record.chance, level), "records": len(record)}


def decide_watermark(agreed: int, asked: int, chance: float, level: float) -> dict:
    """The test's result for ``agreed`` of ``asked`` answers equal to the watermark, against ``chance``."""
    p = float(binomtest(agreed, asked, chance, alternative="greater").pvalue)
    least = int(binom.isf(level, asked, chance)) + 1  # the fewest agreements with a p-value under level
    while least > 0 and binom.sf(least - 2, asked, chance) < level:
        least -= 1
    spread = math.sqrt(chance * (1 - chance) / asked)
    share = agreed / asked
    # derived: a share above the threshold, i.e. at least ``least`` agreements
    return {"statistic": STATISTIC, "value": share, "derived_if": "above", "threshold": (least - 1) / asked,
            "p_value": p, "score": (share - chance) / spread,
            "independent_mean": chance, "verdict": "derived" if p < level else "independent",
            "asked": asked, "agreed": agreed}
