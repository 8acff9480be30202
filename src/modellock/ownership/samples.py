"""The sample sets of the evidence: which images a suspect is asked about.

- ``sac_w``: held-out images the owner's *unlocked* model gets wrong (segmentation: the lowest pixel accuracy).
  The unlocked behaviour is what a thief's model copies (fine-tuning recovers it, an adapter reproduces it, a
  student distilled through the unlock service learns it); its mistakes are its own, and a model derived from
  it tends to repeat them where an independent one does not.
- ``sac_m``: CutMix images: a rectangle (a quarter to a half of the image) of one held-out image pasted into
  another. Ambiguous inputs whose answers depend on a model's own decision boundaries; no training and no
  labels needed.
- ``key_clean`` / ``key_edited``: random held-out images and their edits with the key (the key-feature test).

Every image is stored as the model sees it before normalisation: ``S x S`` uint8, the task type's ``model_view``
(classification: the short side resized to the eval size and the centre ``S x S`` crop; segmentation: resized to
``S x S``); which images it gets most wrong is the task type's ``worst_first``.
"""

from __future__ import annotations

import numpy as np

CUTMIX_AREA = (0.25, 0.5)


def cutmix(images: list[np.ndarray], n: int, rng: np.random.Generator, area=CUTMIX_AREA) -> list[np.ndarray]:
    """``n`` CutMix images: a random rectangle of area ``area`` (a range of fractions) from one image pasted at
    the same place into another (equal-sized ``S x S`` images)."""
    out = []
    size = images[0].shape[0]
    for _ in range(n):
        a, b = rng.choice(len(images), 2, replace=False)
        frac = rng.uniform(*area)
        aspect = np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
        h = int(np.clip(round(size * np.sqrt(frac * aspect)), 1, size))
        w = int(np.clip(round(size * np.sqrt(frac / aspect)), 1, size))
        top, left = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
        mixed = images[a].copy()
        mixed[top:top + h, left:left + w] = images[b][top:top + h, left:left + w]
        out.append(mixed)
    return out
