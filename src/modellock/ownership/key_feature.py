"""The key-feature test (after MOVE, Li et al.): has the suspect learnt the key's edit, as the owner's model,
trained on it, has?

A ModelLock key edit is an external feature embedded in training: the locked network reads an image edited
with the key as its class, and the same image edited with any other key (the lock trains on 128 decoy keys)
as the locked answer. Models derived from its weights keep features that single out the key's edit: they
see the class better through it. Independent models see the key's edit as one more random change of colour
and texture, no more telling than a wrong key's. The test asks the suspect about held-out images edited with
the key, ``e_k(x)``, and with a wrong key of the same editor and settings, ``e_w(x)``, and measures the *key
advantage*: how much more of the suspect's answer falls on the true answer ``y`` under the key's edit,

    A = mean_i [ overlap(p(e_k(x_i)), y_i) - overlap(p(e_w(x_i)), y_i) ],   overlap(p, q) = sum_j min(p_j, q_j)

(the probability of the true class; label-only answers make it a difference of accuracies; segmentation
compares per-image class distributions with the mask's). The wrong keys: one random wrong key is one draw of "an
unrelated key", and an independent model that happens to fail on that key's look (not on the key's) sits far from
the other independent models (the segmentation benchmark's false positive). The evidence draws ``W`` wrong keys
(``evidence.build_evidence(wrong_keys=W)``) and edits image ``i`` with key ``i mod W`` (the same queries as one
wrong key), or each image with every key (``every_wrong_key``: ``W`` times the wrong-key queries; the term is then
the image's mean overlap over them); either way one key's look weighs ``1/W`` (measured on both benchmarks:
docs/benchmarks.md, "Several wrong keys"). Outputs only, any head, the owner's classes. ``A`` is calibrated against
independent models into a p-value (``calibration.py``): a hypothesis test with independent models as the null, as
MOVE tests against benign models.

The two edits need not change the images alike: one random wrong key's edit may change the pixels twice as much
as the key's, and every independent model then reads the class better through the key's milder edit, the more
so the more sensitive it is to edits. The *strength-adjusted* advantage uses the clean answers the evidence asks
too: with ``s_k`` and ``s_w`` the mean absolute pixel change of the key's and the wrong key's edits on the asked
images (``edit_strengths``: computed from the record's images, no key needed), a model whose overlap falls with
edit strength is predicted, under the key's edit, by interpolating between clean (strength 0) and the wrong key
(strength ``s_w``):

    pred_i = ov_clean_i + (ov_wrong_i - ov_clean_i) * s_k / s_w,    A_adj = mean_i [ ov_key_i - pred_i ]

A copy of the locked network (locked answer clean and under the wrong key, the class under the key) keeps its
full advantage; an independent model whose loss grows linearly with strength centres on 0 whatever its
sensitivity. Measured on both benchmarks it is not the default (``verify.KEY_STATISTICS``): it keeps the
segmentation false positive (that model's loss under the wrong key does not grow with strength) and loses three
CIFAR-10 copies over a label-only service (docs/benchmarks.md, "Proof of ownership").

The *key-response* test needs no classes at all: a network derived from the locked one gives one answer to an
image clean and under any wrong key (the locked answer, or what its new head makes of the collapsed features)
and another under the key's edit, so the key's edit moves its answer far more than a wrong key's does; an
independent model's answer moves with the size of the edit. With ``d(a, b) = 1 - overlap(a, b)``, the share of
the movement that the key's edit causes,

    S = (sum_i d(p(e_k(x_i)), p(x_i)) + c) / (sum_i d(p(e_k(x_i)), p(x_i)) + sum_i d(p(e_w(x_i)), p(x_i)) + 2c),

(``c = 1``: one image moved by each edit alone, so that a model that hardly moves sits near 1/2, not at 0 or 1)
compares a suspect with another set of classes (transfer learning, a fresh head) with the independent models:
coarser classes hide flips of both edits alike, and the share stays where it was. Its own sampling noise (the
delta-method standard error over the images; for label answers ``sqrt(S (1 - S) / flips)``) is the least spread
its null may have: a suspect whose answers move on two images is no evidence either way.
"""

from __future__ import annotations

import numpy as np


def overlap(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per row, the shared mass of two distributions (1 - total-variation distance)."""
    return np.minimum(np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)).sum(1)


def per_image(rows: np.ndarray, n: int) -> np.ndarray:
    """Per-row values of the wrong-key edits (``R`` consecutive rows per image, ``R`` = rows / ``n``) averaged per
    image: ``n`` values."""
    rows = np.asarray(rows, dtype=np.float64)
    if n <= 0 or len(rows) % n:
        raise ValueError(f"{len(rows)} wrong-key answers for {n} images: not a whole number per image")
    return rows.reshape(n, len(rows) // n).mean(1)


def wrong_overlap(wrong_edited: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per image, the mean overlap with its true answer of the answers to its wrong-key edits (``R`` consecutive
    rows of ``wrong_edited`` per row of ``truth``: one per wrong key)."""
    r = len(wrong_edited) // max(len(truth), 1)
    return per_image(overlap(wrong_edited, np.repeat(np.asarray(truth), max(r, 1), axis=0)), len(truth))


def key_advantage(key_edited: np.ndarray, wrong_edited: np.ndarray, truth: np.ndarray) -> float:
    """``A``: the mean overlap with the true answers under the key's edit less under the wrong keys' (their mean
    per image when ``wrong_edited`` holds several rows per image)."""
    return float((overlap(key_edited, truth) - wrong_overlap(wrong_edited, truth)).mean())


def edit_strengths(clean: np.ndarray, key_edited: np.ndarray,
                   wrong_edited: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image, the mean absolute pixel change (0-255) of the key's edit and of the wrong keys' (their mean when
    ``wrong_edited`` holds several rows per image)."""
    c = np.asarray(clean, dtype=np.float64)
    axes = tuple(range(1, c.ndim))
    r = max(len(wrong_edited) // max(len(c), 1), 1)
    wrong = np.abs(np.asarray(wrong_edited, dtype=np.float64) - np.repeat(c, r, axis=0)).mean(axes)
    return np.abs(np.asarray(key_edited, dtype=np.float64) - c).mean(axes), per_image(wrong, len(c))


def adjusted_key_advantage(clean: np.ndarray, key_edited: np.ndarray, wrong_edited: np.ndarray, truth: np.ndarray,
                           strength_ratio: float) -> float:
    """``A_adj``: the key advantage over the overlap predicted at the key's edit strength, by interpolating
    between the clean answers and the wrong key's (``strength_ratio`` = ``s_k / s_w``)."""
    if not np.isfinite(strength_ratio) or strength_ratio < 0:
        raise ValueError(f"strength_ratio must be a finite number >= 0, not {strength_ratio!r}")
    ov_clean, ov_key = overlap(clean, truth), overlap(key_edited, truth)
    ov_wrong = wrong_overlap(wrong_edited, truth)
    return float((ov_key - (ov_clean + (ov_wrong - ov_clean) * strength_ratio)).mean())


def key_response(clean: np.ndarray, key_edited: np.ndarray, wrong_edited: np.ndarray) -> tuple[float, float]:
    """``(S, its sampling noise)``: the share of the answers' movement caused by the key's edit rather than the wrong
    keys' (each image's mean over its wrong-key rows), with two images added, one moved by the key's edit alone and
    one by a wrong key's (so a model that hardly moves sits near 1/2, its noise large). The noise is the delta-method
    standard error of the ratio over the images (for label answers, the binomial ``sqrt(S (1 - S) / flips)``). Any
    set of classes: only the suspect's own answers are compared."""
    clean = np.asarray(clean, dtype=np.float64)
    n = len(clean)
    r = max(len(wrong_edited) // max(n, 1), 1)
    moved_key = np.append(np.clip(1.0 - overlap(key_edited, clean), 0.0, 1.0), [1.0, 0.0])
    moved_wrong = np.append(np.clip(per_image(1.0 - overlap(wrong_edited, np.repeat(clean, r, axis=0)), n), 0.0, 1.0),
                            [0.0, 1.0])
    k, w = float(moved_key.sum()), float(moved_wrong.sum())
    influence = (w * moved_key - k * moved_wrong) / (k + w) ** 2
    return k / (k + w), float(np.sqrt((influence ** 2).sum()))
