"""What the ownership evidence (``modellock.ownership``) asks of a segmenter: the image it sees (resized to
``S x S``), its masks at that size and their class areas, answers per image (the mean of the pixels'
probabilities, the share of pixels per class) and the held-out images with the lowest pixel accuracy."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def model_view(image: np.ndarray, size: int) -> np.ndarray:
    """The image resized to ``size x size``, uint8 (before normalisation)."""
    im = Image.fromarray(np.ascontiguousarray(image[:, :, :3]))
    return np.asarray(im.resize((size, size), Image.BILINEAR), dtype=np.uint8)


def square_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A mask resized (nearest) to ``size x size``, as its image by ``model_view``."""
    return np.asarray(Image.fromarray(mask.astype(np.int32)).resize((size, size), Image.NEAREST), dtype=np.int64)


def areas(mask: np.ndarray, k: int, ignore_index: int) -> np.ndarray:
    """The share of a mask's scored pixels per class."""
    m = mask[(mask != ignore_index) & (mask >= 0) & (mask < k)]
    counts = np.bincount(m.ravel(), minlength=k).astype(np.float32)
    return counts / max(counts.sum(), 1.0)


def answer_distributions(outputs: torch.Tensor) -> dict[str, torch.Tensor]:
    """``probs`` (softmax, its mean over pixels) and ``areas`` (pixels per argmax class) of N x K x H x W outputs."""
    top = outputs.argmax(1).flatten(1)
    counts = torch.zeros(len(top), outputs.shape[1]).scatter_add_(1, top, torch.ones_like(top, dtype=torch.float))
    return {"probs": outputs.softmax(1).mean(dim=(2, 3)), "areas": counts / top.shape[1]}


@torch.inference_mode()
def predicted_masks(net, images, transform, k: int) -> list[np.ndarray]:
    """The argmax masks over the first ``k`` outputs of ``net`` on ``images``."""
    out = []
    for i in range(0, len(images), 128):
        x = torch.stack([transform(a) for a in images[i:i + 128]])
        out += [m.numpy() for m in net(x).float()[:, :k].argmax(1)]
    return out


def worst_first(predictions, masks, n: int, num_classes: int, ignore_index: int) -> np.ndarray:
    """Indices of the ``n`` images with the lowest pixel accuracy (``predictions``: masks at the masks' size)."""
    acc = []
    for pred, mask in zip(predictions, masks):
        keep = (mask != ignore_index) & (mask < num_classes)
        acc.append(float((pred[keep] == mask[keep]).mean()) if keep.any() else 1.0)
    return np.argsort(np.asarray(acc), kind="stable")[:n]
