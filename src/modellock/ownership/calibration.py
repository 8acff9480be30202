"""Thresholds and p-values from independent models, and training those models.

Each method gives a distance (smaller: closer to the owner's model). Under the null hypothesis the suspect is
one more independent model: its distance is a draw from the distribution of independent models' distances,
taken as normal with the mean and spread of the ``n`` calibration models. The p-value is the one-sided tail of
the predictive Student t distribution (``n - 1`` degrees of freedom, scale ``s * sqrt(1 + 1/n)``): the chance
that an independent model lies at least this close. A method calls a suspect ``derived`` when its p-value is
below ``alpha / methods`` (Bonferroni), so the verdict's false-positive rate is at most ``alpha`` under that
null; the threshold is the distance at which the p-value equals that level.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
from scipy.stats import mannwhitneyu, t

from ..errors import ModelLockError
from ..lock import train_baseline
from ..model_folder import LockedModel
from ..train import TrainConfig

MIN_INDEPENDENT = 3


def null_fit(distances, floor: float = 0.0) -> tuple[float, float, int]:
    """``(mean, predictive scale, n)`` of independent models' distances; the spread is at least ``floor`` (the
    statistic's own sampling noise, where it is known: a few independent models that happen to agree must not
    make every small difference significant)."""
    d = np.asarray([x for x in distances if x is not None and math.isfinite(x)], dtype=np.float64)
    if len(d) < MIN_INDEPENDENT:
        raise ModelLockError(f"calibration needs at least {MIN_INDEPENDENT} independent models, got {len(d)}")
    sd = float(d.std(ddof=1))
    sd = max(sd, float(floor), 1e-6 * max(abs(float(d.mean())), 1e-12), 1e-12)  # identical: a tiny spread
    return float(d.mean()), sd * math.sqrt(1.0 + 1.0 / len(d)), len(d)


def p_value(distance: float, null) -> float:
    """One-sided p-value of ``distance`` under the independent models' ``null`` (``null_fit``)."""
    mean, scale, n = null
    return float(t.cdf((distance - mean) / scale, df=n - 1))


def threshold(null, level: float) -> float:
    """The distance below which the p-value is under ``level``."""
    mean, scale, n = null
    return float(mean + t.ppf(level, df=n - 1) * scale)


def z_score(distance: float, null) -> float:
    """How many predictive scales the distance lies below the independent models' mean (the calibrated score:
    larger is more like the owner's model)."""
    mean, scale, _ = null
    return float((mean - distance) / scale)


def auc(positives, negatives) -> float:
    """Area under the ROC curve when positives should have the *smaller* distances (Mann-Whitney U)."""
    pos, neg = np.asarray(positives, dtype=np.float64), np.asarray(negatives, dtype=np.float64)
    if not len(pos) or not len(neg):
        return float("nan")
    u = mannwhitneyu(neg, pos, alternative="two-sided").statistic  # pairs with negative > positive
    return float(u / (len(pos) * len(neg)))


def tpr_at_zero_fp(positives, negatives) -> float:
    """The share of positives closer than every negative."""
    pos, neg = np.asarray(positives, dtype=np.float64), np.asarray(negatives, dtype=np.float64)
    return float((pos < neg.min()).mean()) if len(pos) and len(neg) else float("nan")


# ----------------------------------------------------------------------------------------------- training
def train_independent(source, arch: str, seed: int, epochs: int, out: Path, image_size: int, split: str = "train",
                      lr: float = 1e-3, batch_size: int = 64, limit: int | None = None):
    """Train (or reuse) one independent model: ``arch`` from scratch on ``split``'s clean images, a model
    folder in ``out`` (reused when it holds one trained with the same settings)."""
    settings = {"arch": arch, "seed": seed, "epochs": epochs, "split": split, "lr": lr, "limit": limit,
                "batch_size": batch_size, "image_size": image_size, "source": source.source_id}
    stamp = out / "independent.json"
    if (out / "model.safetensors").exists() and stamp.exists() and json.loads(stamp.read_text()) == settings:
        return LockedModel.from_pretrained(out, device="cpu")
    if limit is not None:
        source = copy.copy(source)
        source.splits = dict(source.splits)
        source.limit(split, limit, seed)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, num_workers=0,
                         warmup_epochs=min(1.0, epochs / 4))
    model = train_baseline(source, arch, out, config, image_size=image_size, split=split, overwrite=True)
    stamp.write_text(json.dumps(settings))
    return model
