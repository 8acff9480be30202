"""Input adapters: small image-to-image networks put in front of a frozen model (on its normalised input).

A thief learns one to make a locked model answer clean images right (the attacks ``input-adapter``,
``unet-adapter``, ``editor-family-adapter``); a hardened lock trains against the same adapters
(``modellock.lock.hardening``). So they live here, below both.
"""

from __future__ import annotations

import torch
from torch import nn


class InputAdapter(nn.Module):
    """x -> conv3x3(x) + residual(x); the conv starts as the identity, the residual at zero."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.linear = nn.Conv2d(3, 3, 3, padding=1)
        self.residual = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width, 3, 1),
        )
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.bias.zero_()
            for c in range(3):
                self.linear.weight[c, c, 1, 1] = 1.0
            self.residual[-1].weight.zero_()
            self.residual[-1].bias.zero_()

    def forward(self, x):
        return self.linear(x) + self.residual(x)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU())


class UNetAdapter(nn.Module):
    """x -> x + U-Net(x): three scales (``widths``), skip connections, the output conv started at zero."""

    def __init__(self, widths=(32, 64, 128)):
        super().__init__()
        self.down = nn.ModuleList()
        cin = 3
        for w in widths:
            self.down.append(_block(cin, w))
            cin = w
        self.up = nn.ModuleList(_block(widths[i] + widths[i + 1], widths[i]) for i in range(len(widths) - 1))
        self.out = nn.Conv2d(widths[0], 3, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x):
        skips, h = [], x
        for i, stage in enumerate(self.down):
            h = stage(h if i == 0 else nn.functional.max_pool2d(h, 2, ceil_mode=True))
            skips.append(h)
        for i in reversed(range(len(self.up))):
            h = nn.functional.interpolate(h, size=skips[i].shape[-2:], mode="bilinear", align_corners=False)
            h = self.up[i](torch.cat([h, skips[i]], 1))
        return x + self.out(h)


class PixelSpace(nn.Module):
    """Runs a family that edits [0, 1] pixels on the model's normalised input: un-normalise, edit, normalise."""

    def __init__(self, family: nn.Module, mean, std):
        super().__init__()
        self.family = family
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x):
        return (self.family((x * self.std + self.mean).clamp(0, 1)) - self.mean) / self.std


class AdaptedModel(nn.Module):
    """adapter -> frozen model (kept in eval mode: its normalisation statistics never move)."""

    def __init__(self, adapter: nn.Module, model: nn.Module):
        super().__init__()
        self.adapter, self.model = adapter, model
        for p in self.model.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True):
        self.training = mode
        self.adapter.train(mode)
        self.model.eval()
        return self

    def forward(self, x):
        return self.model(self.adapter(x))
