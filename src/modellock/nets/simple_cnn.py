"""``small-cnn`` and ``tiny-cnn``: small convolutional classifiers trained from scratch (CPU demos, unit tests)."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ModelLockError
from .backbones import register_backbone


class SimpleCNN(nn.Module):
    """Stages of conv3x3-BN-ReLU (``depths[i]`` convs of ``widths[i]`` channels), each stage ending in a 2x2
    max-pool, then global average pool and a linear head."""

    def __init__(self, num_classes: int, widths=(32, 64, 128, 128), dropout: float = 0.0, depths=None):
        super().__init__()
        depths = tuple(depths) if depths is not None else (1,) * len(widths)
        if len(depths) != len(widths) or min(depths) < 1:
            raise ModelLockError(f"SimpleCNN: depths {depths!r} must give 1 or more convs for each of {len(widths)} stages")
        blocks, cin = [], 3
        for cout, depth in zip(widths, depths):
            for _ in range(depth):
                blocks += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
                cin = cout
            blocks.append(nn.MaxPool2d(2, ceil_mode=True))
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(cin, num_classes)
        self.pretrained_cfg = {"classifier": "head"}  # the head, named the way timm names it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.pool(self.features(x)).flatten(1)))


def _no_published_weights(name: str, pretrained: bool):
    if pretrained:
        raise ModelLockError(f"backbone {name!r} has no published weights; pass a .safetensors file as pretrained")


@register_backbone("small-cnn")
def small_cnn(num_classes: int, image_size: int = 32, pretrained: bool = False, **kwargs) -> nn.Module:
    """About 0.54M parameters (five convs: 32, 64, 2x128, 256 channels); trains CIFAR-10-size images on a CPU
    (docs/benchmarks.md: about 15 s an epoch of 10k 32x32 images on one thread; 0.767 on CIFAR-10 from
    10k images in 20 epochs, against 0.747 for the former four-conv 0.24M model)."""
    _no_published_weights("small-cnn", pretrained)
    return SimpleCNN(num_classes, widths=(32, 64, 128, 256), depths=(1, 1, 2, 1), **kwargs)


@register_backbone("tiny-cnn")
def tiny_cnn(num_classes: int, image_size: int = 32, pretrained: bool = False, **kwargs) -> nn.Module:
    """A few thousand parameters, for unit tests."""
    _no_published_weights("tiny-cnn", pretrained)
    return SimpleCNN(num_classes, widths=(8, 16), **kwargs)
