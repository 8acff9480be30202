"""The key-feature test (after MOVE, Li et al.): has the suspect learnt the key's edit, as the owner's model,
trained on it, has?

A ModelLock key edit is an external feature embedded in training: the locked network answers an image edited
with the key with its unlocked answer, and the same image edited with any other key (the lock trains on 128
decoy keys) with its locked one. Models derived from its weights keep features that single out the key's
edit; independent models see it as one more random change of colour and texture. The test asks the suspect
about images edited with the key, ``e_k(x)``, and with a wrong key of the same editor and settings,
``e_w(x)``, and measures the *key agreement*: how much more the suspect's answer overlaps the owner's unlocked
answer ``u(x)`` (right or wrong) under the key's edit than under the wrong key's,

    A = mean_i [ overlap(p(e_k(x_i)), u_i) - overlap(p(e_w(x_i)), u_i) ],   overlap(p, q) = sum_j min(p_j, q_j)

(one minus the total-variation distance: label-only answers make it a difference of agreement rates;
segmentation compares the per-image class distributions). An independent model has no reason to tell the
two keys apart (A near 0); a model derived from the locked one does (A > 0). Outputs only, any head, the
owner's classes. The images are those of SAC-w (the unlocked model's mistakes, so agreement with it is not
mere accuracy). Calibrated against independent models into a p-value (``calibration.py``): a hypothesis test
with independent models as the null, as MOVE tests against benign models.
"""

from __future__ import annotations

import numpy as np


def overlap(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per row, the shared mass of two distributions (1 - total-variation distance)."""
    return np.minimum(np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)).sum(1)


def key_agreement(key_edited: np.ndarray, wrong_edited: np.ndarray, owner_unlocked: np.ndarray) -> float:
    """``A``: the mean overlap with the owner's unlocked answers under the key's edit less under the wrong key's."""
    return float((overlap(key_edited, owner_unlocked) - overlap(wrong_edited, owner_unlocked)).mean())


