"""Classification transforms: from an HxWx3 uint8 array or PIL image to a normalised 3xSxS tensor, with the
standard augmentations for training (a fast path of a few tensor ops for small images, torchvision v2 else)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from ...utils.images import IMAGENET_MEAN, IMAGENET_STD


def _writable(image):
    """A read-only array (decoded, memory-mapped) copied, so torch.from_numpy does not warn."""
    return image.copy() if isinstance(image, np.ndarray) and not image.flags.writeable else image


def eval_short_side(image_size: int) -> int:
    """The short side an image is resized to before the eval center crop (more than the crop for large inputs)."""
    return image_size if image_size <= 64 else round(image_size / 0.875)


def classification_transforms(image_size: int, train: bool, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """From an HxWx3 uint8 array or PIL image to a normalised 3xSxS float tensor.

    Train: pad + random crop for small images (<= 64 px), else RandomResizedCrop; horizontal flip.
    Eval: resize the short side (to image_size/0.875 for large images) and center-crop.
    Small images take a fast path of a few tensor ops (the v2 pipeline costs ~1.5 ms per 32 px image,
    more than the small CNN's training step); large ones use torchvision v2.
    """
    if image_size <= 64:
        return SmallImageTransform(image_size, train, mean, std)
    if train:
        geometry = [v2.RandomResizedCrop(image_size, antialias=True)]
    else:
        geometry = [v2.Resize(eval_short_side(image_size), antialias=True), v2.CenterCrop(image_size)]
    flip = [v2.RandomHorizontalFlip()] if train else []
    return v2.Compose([
        v2.Lambda(_writable),
        v2.ToImage(),
        *geometry,
        *flip,
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean, std),
    ])


class SmallImageTransform:
    """Resize the short side to S; train: reflect-pad S/8, random SxS crop, random flip; eval: center crop.

    Random draws come from torch's generator, which the training loop seeds per (seed, epoch, worker).
    """

    def __init__(self, image_size: int, train: bool, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.size, self.train, self.pad = image_size, train, image_size // 8
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, image) -> torch.Tensor:
        a = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else np.asarray(image)
        if a.ndim == 2:
            a = np.repeat(a[:, :, None], 3, axis=2)
        h, w = a.shape[:2]
        s = self.size
        if min(h, w) != s:
            scale = s / min(h, w)
            h, w = max(s, round(h * scale)), max(s, round(w * scale))
            a = np.asarray(Image.fromarray(np.ascontiguousarray(a[:, :, :3])).resize((w, h), Image.BILINEAR))
        x = torch.from_numpy(np.array(a[:, :, :3])).permute(2, 0, 1).float().div_(255.0)
        if self.train:
            p = self.pad
            if p:
                x = torch.nn.functional.pad(x[None], (p, p, p, p), mode="reflect")[0]
            i = int(torch.randint(0, h + 2 * p - s + 1, ()))
            j = int(torch.randint(0, w + 2 * p - s + 1, ()))
            x = x[:, i:i + s, j:j + s]
            if bool(torch.rand(()) < 0.5):
                x = x.flip(2)
        else:
            i, j = (h - s) // 2, (w - s) // 2
            x = x[:, i:i + s, j:j + s]
        return (x - self.mean) / self.std
