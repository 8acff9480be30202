"""Differentiable parameter families of the CPU key editors, for the ``editor-family-adapter`` attack.

Each family is a ``torch.nn.Module`` taking ``[0, 1]`` pixels (``B x 3 x H x W``) and returning the edit
blended with its input by the key's ``alpha``, as the editor does, without the rounding to uint8.
Importing this module imports torch; the editors import it only when a family is asked for.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .networks import keyed_net_forward


def lut_lookup(lut: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-channel lookup table (``3 x L``) at continuous levels ``x`` in [0, 1] (``B x 3 x H x W``), linear
    between table entries: differentiable in the table and in ``x``."""
    levels = lut.shape[1] - 1
    pos = x.clamp(0, 1) * levels
    low = pos.floor().clamp(max=levels - 1)
    frac = pos - low
    low = low.long()
    b, c, h, w = x.shape
    flat = low.permute(1, 0, 2, 3).reshape(c, -1)
    lo = torch.gather(lut, 1, flat).reshape(c, b, h, w).permute(1, 0, 2, 3)
    hi = torch.gather(lut, 1, flat + 1).reshape(c, b, h, w).permute(1, 0, 2, 3)
    return lo + frac * (hi - lo)


class KeyedFilterFamily(nn.Module):
    """``keyed-filter`` with every parameter free: tone curves (256 levels a channel), colour mix, bias and a
    3x3 filter a channel; started at one editor's (one key's) parameters."""

    def __init__(self, editor, alpha: float):
        super().__init__()
        self.lut = nn.Parameter(torch.tensor(editor.lut))
        self.mix = nn.Parameter(torch.tensor(editor.mix))
        self.bias = nn.Parameter(torch.tensor(editor.bias))
        self.kernels = nn.Parameter(torch.tensor(editor.kernels).unsqueeze(1))  # 3 x 1 x 3 x 3, depthwise
        self.alpha = float(alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = lut_lookup(self.lut, x)
        y = torch.einsum("oc,bchw->bohw", self.mix, y) + self.bias.view(1, 3, 1, 1)
        y = F.conv2d(F.pad(y, (1, 1, 1, 1), mode="reflect"), self.kernels, groups=3)
        edit = (y + 0.5).clamp(0, 1)
        return (1 - self.alpha) * x + self.alpha * edit


class KeyedNetFamily(nn.Module):
    """``keyed-net`` with every weight trainable (convolutions, biases, spatial waves, colour rotation),
    started at one key's weights."""

    def __init__(self, weights: dict, alpha: float):
        super().__init__()
        self.weights = nn.ParameterDict({k: nn.Parameter(torch.tensor(v)) for k, v in weights.items()})
        self.alpha = float(alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        edit = keyed_net_forward(x, self.weights, torch)
        return (1 - self.alpha) * x + self.alpha * edit
