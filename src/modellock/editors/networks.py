"""The forward pass of ``keyed-net``'s network, shared by the editor (fixed weights, ``keyed_net.py``) and its
attack family (trainable weights, ``families.py``). ``torch`` is passed in: importing this module imports no torch."""

from __future__ import annotations

import numpy as np

SCALES = (1, 2, 4)


def keyed_net_forward(x, w: dict, torch):
    """The edit of ``x`` (``B x 3 x H x W`` in [0, 1]) with weights ``w`` (tensors): the same function for the
    editor (fixed weights) and the attack family (trainable weights)."""
    f = torch.nn.functional
    z = x * 2 - 1
    b, _, h, wd = z.shape
    feats = []
    for s in SCALES:
        d = f.avg_pool2d(z, s, ceil_mode=True) if s > 1 else z
        a = torch.sin(f.conv2d(f.pad(d, (1, 1, 1, 1), mode="replicate"), w[f"conv1_{s}"]) + w[f"bias1_{s}"].view(1, -1, 1, 1))
        a = torch.tanh(f.conv2d(f.pad(a, (1, 1, 1, 1), mode="replicate"), w[f"conv2_{s}"]) + w[f"bias2_{s}"].view(1, -1, 1, 1))
        if s > 1:
            a = f.interpolate(a, size=(h, wd), mode="bilinear", align_corners=False)
        feats.append(a * modulation(w[f"freq_{s}"], w[f"phase_{s}"], w[f"amp_{s}"], h, wd, torch))
    texture = f.conv2d(torch.cat(feats, 1), w["out"])
    colour = torch.einsum("oc,bchw->bohw", w["colour"], z) + w["colour_bias"].view(1, 3, 1, 1)
    return (torch.tanh(colour + texture) + 1) / 2


def modulation(freq, phase, amp, h: int, w: int, torch):
    """``1 + sum_k amp_k sin(2 pi freq_k . (v, u) + phase_k)`` per channel over normalised coordinates."""
    v = (torch.arange(h, dtype=freq.dtype) + 0.5) / h
    u = (torch.arange(w, dtype=freq.dtype) + 0.5) / w
    arg = 2 * np.pi * (freq[..., 0, None, None] * v.view(1, 1, h, 1) + freq[..., 1, None, None] * u.view(1, 1, 1, w))
    return 1 + (amp[..., None, None] * torch.sin(arg + phase[..., None, None])).sum(1)[None]
