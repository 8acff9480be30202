"""The sample sets of the evidence: which images a suspect is asked about.

- ``sac_w``: held-out images the owner's *unlocked* model gets wrong (segmentation: the lowest pixel accuracy).
  The unlocked behaviour is what a thief's model copies (fine-tuning recovers it, an adapter reproduces it, a
  student distilled through the unlock service learns it); its mistakes are its own, and a model derived from
  it tends to repeat them where an independent one does not.
- ``sac_m``: CutMix images: a rectangle (a quarter to a half of the image) of one held-out image pasted into
  another. Ambiguous inputs whose answers depend on a model's own decision boundaries; no training and no
  labels needed.
- ``key_clean`` / ``key_edited``: random held-out images and their edits with the key (the key-feature test).

Every image is stored as the model sees it before normalisation: ``S x S`` uint8 (classification: the short
side resized to the eval size and the centre ``S x S`` crop; segmentation: resized to ``S x S``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..tasks.classification.transforms import eval_short_side

CUTMIX_AREA = (0.25, 0.5)


def square(image: np.ndarray, size: int, task: str) -> np.ndarray:
    """``image`` as the ``size x size`` uint8 input the model sees (before normalisation)."""
    im = Image.fromarray(np.ascontiguousarray(image[:, :, :3]))
    if task == "segmentation":
        return np.asarray(im.resize((size, size), Image.BILINEAR), dtype=np.uint8)

    short = eval_short_side(size)
    w, h = im.size
    if min(w, h) != short:
        scale = short / min(w, h)
        im = im.resize((max(short, round(w * scale)), max(short, round(h * scale))), Image.BILINEAR)
    w, h = im.size
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)


def square_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A segmentation mask resized (nearest) to ``size x size``, as its image by ``square``."""
    return np.asarray(Image.fromarray(mask.astype(np.int32)).resize((size, size), Image.NEAREST), dtype=np.int64)


def wrong_first(task: str, probs: np.ndarray, targets, n: int, num_classes: int, ignore_index: int = 255,
                predictions=None) -> np.ndarray:
    """Indices of the ``n`` samples the owner's unlocked model gets most wrong.

    Classification: the wrongly classified ones first, then by the probability of the true class (lowest
    first). Segmentation (``predictions``: per-image predicted masks at the targets' size): by pixel accuracy,
    lowest first."""
    if task == "segmentation":
        acc = []
        for pred, mask in zip(predictions, targets):
            keep = (mask != ignore_index) & (mask < num_classes)
            acc.append(float((pred[keep] == mask[keep]).mean()) if keep.any() else 1.0)
        order = np.argsort(np.asarray(acc), kind="stable")
    else:
        labels = np.asarray(targets, dtype=np.int64)
        p_true = probs[np.arange(len(labels)), labels]
        right = probs.argmax(1) == labels
        order = np.lexsort((p_true, right))  # wrong (False) first, then low true-class probability
    return order[:n]


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
