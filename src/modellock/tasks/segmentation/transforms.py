"""Joint image + mask transforms for segmentation: one random geometry for both, masks only ever nearest.

Train: small images (S <= 64) take a fast path like ``train.SmallImageTransform`` (resize the short side to S,
pad S/8 — image reflect, mask ``ignore_index`` —, random SxS crop, random flip); larger ones a
RandomResizedCrop(S, scale 0.25-1) + flip with torchvision v2 kernels. Random draws come from torch's global
generator (the training loop seeds it per epoch and worker).
Eval: the whole image resized to SxS, and the mask at its original size, unchanged (metrics are computed at the
original resolution after upsampling the logits), so ``segmentation_collate`` may return a list of masks.
``fixed_size_transform``: training without augmentation, image and mask both resized to SxS.
``image_transform``: the eval image path alone, for predictors.

Image resizing is bilinear (antialiased when shrinking); masks are resized with pixel-centre nearest
neighbour (PIL NEAREST, torchvision NEAREST_EXACT) so they stay aligned with the bilinear image. (v2's own
Mask handling uses legacy NEAREST, which shifts masks by up to half an output pixel.)
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

from ...errors import DataError
from ...utils.images import (IMAGENET_MEAN, IMAGENET_STD, resize_mask,  # noqa: F401  (resize_mask: here too)
                             to_uint8_rgb)


def _resize_image(a: np.ndarray, h: int, w: int) -> np.ndarray:
    if a.shape[:2] == (h, w):
        return a
    return np.asarray(Image.fromarray(a).resize((w, h), Image.BILINEAR))


def _chw(a: np.ndarray) -> torch.Tensor:
    """A 3xHxW uint8 tensor of its own (PIL's arrays are read-only)."""
    return torch.from_numpy(np.array(a)).permute(2, 0, 1)


def _to_float(a: np.ndarray) -> torch.Tensor:
    return _chw(a).float().div_(255.0)


def _pair(image, mask) -> tuple[np.ndarray, np.ndarray]:
    """HxWx3 uint8 and HxW int64 arrays of the same height and width."""
    a, m = to_uint8_rgb(image), np.array(mask, dtype=np.int64)
    if m.shape != a.shape[:2]:
        raise DataError(f"mask is {m.shape} but its image is {a.shape[:2]} (HxW); they must match")
    return a, m


class ImageTransform:
    """Inference (and eval) image path: the whole image resized to SxS, normalised to a 3xSxS float tensor."""

    def __init__(self, image_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.size = image_size
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """(x - mean) / std for a 3xHxW float tensor in [0, 1]."""
        return (x - self.mean) / self.std

    def __call__(self, image) -> torch.Tensor:
        a = to_uint8_rgb(image)
        return self.normalise(_to_float(_resize_image(a, self.size, self.size)))


def image_transform(image_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> ImageTransform:
    """From an HxWx3 uint8 array or PIL image to the normalised 3xSxS input a segmenter sees at eval."""
    return ImageTransform(image_size, mean, std)


class SegmentationTransform:
    """``(image, mask) -> (x 3xSxS float32, y int64 mask)``; see the module docstring."""

    def __init__(self, image_size: int, train: bool, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 ignore_index: int = 255):
        self.size, self.train, self.ignore_index = image_size, train, ignore_index
        self.image = ImageTransform(image_size, mean, std)
        self._crop = None
        if train and image_size > 64:
            self._crop = v2.RandomResizedCrop(image_size, scale=(0.25, 1.0))

    def __call__(self, image, mask) -> tuple[torch.Tensor, torch.Tensor]:
        a, m = _pair(image, mask)
        if not self.train:
            return self.image(a), torch.from_numpy(m)
        x, y = self._pad_crop(a, m) if self.size <= 64 else self._resized_crop(a, m)
        if bool(torch.rand(()) < 0.5):
            x, y = x.flip(-1), y.flip(-1)
        return self.image.normalise(x), y

    def _pad_crop(self, a: np.ndarray, m: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Resize the short side to S, pad S/8 (image reflect, mask ignore_index), random SxS crop."""
        s, p = self.size, self.size // 8
        h, w = m.shape
        if min(h, w) != s:
            scale = s / min(h, w)
            h, w = max(s, round(h * scale)), max(s, round(w * scale))
        x, y = _to_float(_resize_image(a, h, w)), torch.from_numpy(resize_mask(m, h, w))
        if p:
            x = torch.nn.functional.pad(x[None], (p, p, p, p), mode="reflect")[0]
            y = torch.nn.functional.pad(y, (p, p, p, p), value=self.ignore_index)
        i = int(torch.randint(0, h + 2 * p - s + 1, ()))
        j = int(torch.randint(0, w + 2 * p - s + 1, ()))
        return x[:, i:i + s, j:j + s], y[i:i + s, j:j + s]

    def _resized_crop(self, a: np.ndarray, m: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """RandomResizedCrop(S, scale=(0.25, 1)): image bilinear + antialias, mask pixel-centre nearest."""
        image = _chw(a)
        box = self._crop.make_params([image])
        size = [self.size, self.size]
        x = F.resized_crop(image, **box, size=size, interpolation=InterpolationMode.BILINEAR, antialias=True)
        y = F.resized_crop(torch.from_numpy(m)[None], **box, size=size,
                           interpolation=InterpolationMode.NEAREST_EXACT)[0]
        return x.float().div_(255.0), y


def segmentation_transforms(image_size: int, train: bool, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                            ignore_index: int = 255) -> SegmentationTransform:
    """The joint transform for training (``train=True``) or evaluation; see the module docstring."""
    return SegmentationTransform(image_size, train, mean, std, ignore_index)


class FixedSizeTransform:
    """``(image, mask) -> (x 3xSxS, y SxS)`` without randomness: image bilinear, mask nearest."""

    def __init__(self, image_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.image = ImageTransform(image_size, mean, std)

    def __call__(self, image, mask) -> tuple[torch.Tensor, torch.Tensor]:
        a, m = _pair(image, mask)
        return self.image(a), torch.from_numpy(resize_mask(m, self.image.size, self.image.size))


def fixed_size_transform(image_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> FixedSizeTransform:
    """Training without augmentation: image and mask both resized to SxS."""
    return FixedSizeTransform(image_size, mean, std)


def segmentation_collate(batch):
    """Stack a batch of ``(x, y)``: ``y`` stacked when all masks have one shape, else a list of masks."""
    xs, ys = zip(*batch)
    same = all(y.shape == ys[0].shape for y in ys)
    return torch.stack(xs), (torch.stack(ys) if same else list(ys))
