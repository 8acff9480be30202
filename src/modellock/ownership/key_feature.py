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
compares per-image class distributions with the mask's). Outputs only, any head, the owner's classes. ``A``
is calibrated against independent models into a p-value (``calibration.py``): a hypothesis test with
independent models as the null, as MOVE tests against benign models.
"""

from __future__ import annotations

import numpy as np


def overlap(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per row, the shared mass of two distributions (1 - total-variation distance)."""
    return np.minimum(np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)).sum(1)


def key_advantage(key_edited: np.ndarray, wrong_edited: np.ndarray, truth: np.ndarray) -> float:
    """``A``: the mean overlap with the true answers under the key's edit less under the wrong key's."""
    return float((overlap(key_edited, truth) - overlap(wrong_edited, truth)).mean())

