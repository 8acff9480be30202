"""What the ownership evidence (``modellock.ownership``) asks of a classifier: the image it sees, its targets and
their distributions, and the held-out images it gets most wrong."""

from __future__ import annotations

import numpy as np
from PIL import Image

from .transforms import eval_short_side


def model_view(image: np.ndarray, size: int) -> np.ndarray:
    """The short side resized to the eval size and the centre ``size x size`` crop, uint8 (before normalisation)."""
    im = Image.fromarray(np.ascontiguousarray(image[:, :, :3]))
    short = eval_short_side(size)
    w, h = im.size
    if min(w, h) != short:
        scale = short / min(w, h)
        im = im.resize((max(short, round(w * scale)), max(short, round(h * scale))), Image.BILINEAR)
    w, h = im.size
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)


def worst_first(probs: np.ndarray, labels, n: int) -> np.ndarray:
    """Indices of the ``n`` most wrong: the wrongly classified first, then by the true class's probability."""
    labels = np.asarray(labels, dtype=np.int64)
    p_true = probs[np.arange(len(labels)), labels]
    right = probs.argmax(1) == labels
    return np.lexsort((p_true, right))[:n]  # wrong (False) first, then low true-class probability
