"""``keyed-filter``: a CPU key editor for demos and tests, no downloaded weights.

The key's prompt and seed seed a random tone curve per channel (monotone, piecewise linear), a random
colour transform (a rotation of RGB space by 60-120 degrees about a random axis, with channel gains
and a bias), a random per-channel 3x3 texture filter, and optionally a keyed 8x8 texture tile
(``params.pattern``, off by default). The same (prompt, seed) always gives the same edit; another
prompt gives a different transform; shapes stay recognisable, and a model learns to tell its edits
from clean images, so it locks.

The edit keeps the image's information through the blend with the original (``alpha`` 0.5 by
default): a monotone tone curve blended with the identity stays monotone, and a rotation of at most
120 degrees blended with the identity keeps every colour direction (singular values >= 0.5 before
the gains). Version 2 drew any orthogonal map; a reflection or a near half-turn blended with the
original cancels a colour direction (for the demo key, singular values 1.07, 0.11, 0.04: almost a
grey image), which cost the unlocked model accuracy. Version 1 bounded the rotation to 35-75
degrees, too subtle to tell from clean images. docs/benchmarks.md has the measurements.

Its key space is far weaker than a diffusion model's (a thief who knows the method can fit a colour
transform and filter from examples): use it to demonstrate and test the pipeline, not to protect a
model.
"""

from __future__ import annotations

import hashlib

import numpy as np

from . import register_editor
from .base import Editor


def _rng(key) -> np.random.Generator:
    seed_material = f"keyed-filter\x00{key.prompt}\x00{key.seed}".encode()
    return np.random.default_rng(int.from_bytes(hashlib.sha256(seed_material).digest()[:16], "little"))


@register_editor("keyed-filter")
class KeyedFilterEditor(Editor):
    """Keyed tone curves + colour rotation + texture filter; exact and batch-independent (elementwise float32 ops)."""

    edits_in_loop = True
    max_batch_pixels = 1 << 22  # 4096 images of 32x32, 64 of 256x256

    key_defaults = {"model": "", "resolution": 0, "steps": 1}
    # 1: rotation bounded to 35-75 degrees; 2: any orthogonal map (could flatten a colour direction);
    # 3 (not released, measured in docs/benchmarks.md): version 4 without the tone curves
    version = 4
    # strength: 1.0 by default, smaller is subtler (and locks worse); pattern: amplitude (0..1) of a keyed
    # 8x8 texture tile added after the filter, 0 (off) by default.
    param_types = {"strength": float, "pattern": float}
    default_batch_size = 4096

    def __init__(self, key, device=None, batch_size=None):
        super().__init__(key, device, batch_size)
        strength = float(key.params.get("strength", 1.0))
        rng = _rng(key)
        # a keyed tone curve per channel: monotone piecewise linear from [0, 1] onto itself, 4 equal pieces
        # with slopes from e^-0.8 to e^0.8 before normalising (so the blend with the original stays monotone too)
        slopes = np.exp(rng.uniform(-0.8, 0.8, size=(3, 4)))
        knots = np.concatenate([np.zeros((3, 1)), np.cumsum(slopes / slopes.sum(1, keepdims=True), 1)], 1)
        levels = np.arange(256) / 255.0
        curves = np.stack([np.interp(levels, np.linspace(0, 1, 5), k) for k in knots])
        self.lut = (levels + strength * (curves - levels) - 0.5).astype(np.float32)  # 3 x 256, centred
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        angle = np.deg2rad(rng.uniform(60.0, 120.0)) * rng.choice([-1.0, 1.0])
        cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        rotation = np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross  # Rodrigues
        gains = rng.uniform(0.7, 1.3, size=3)
        mix = np.eye(3) + strength * (rotation * gains[:, None] - np.eye(3))
        self.mix = mix.astype(np.float32)
        self.bias = (strength * rng.uniform(-0.15, 0.15, size=3)).astype(np.float32)
        kernels = rng.normal(size=(3, 3, 3))
        kernels -= kernels.mean(axis=(1, 2), keepdims=True)  # zero-sum: texture, not brightness
        kernels /= np.abs(kernels).sum(axis=(1, 2), keepdims=True)
        self.kernels = (strength * 1.5 * kernels).astype(np.float32)
        self.kernels[:, 1, 1] += 1.0
        tile = rng.normal(size=(8, 8, 3))
        self.tile = (float(key.params.get("pattern", 0.0)) * tile / np.abs(tile).max()).astype(np.float32)

    @classmethod
    def attack_family(cls, key):
        """Free tone curves (256 levels a channel), colour mix, bias and 3x3 filters, blended by the key's alpha."""
        # lazy: torch; the editor list and the key commands stay light
        from .families import KeyedFilterFamily

        return KeyedFilterFamily(cls(key), key.alpha)

    def edit_batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        a = np.stack(images)
        x = np.stack([self.lut[c][a[..., c]] for c in range(3)], axis=-1)  # tone curves, B,H,W,3 float32
        y = np.empty_like(x)
        for o in range(3):  # colour mix, written out elementwise so batching never changes rounding
            y[..., o] = (self.mix[o, 0] * x[..., 0] + self.mix[o, 1] * x[..., 1]
                         + self.mix[o, 2] * x[..., 2] + self.bias[o])
        h, w = y.shape[1:3]
        padded = np.pad(y, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
        out = np.zeros_like(y)
        for c in range(3):
            for dy in range(3):
                for dx in range(3):
                    out[..., c] += self.kernels[c, dy, dx] * padded[:, dy:dy + h, dx:dx + w, c]
        if self.tile.any():
            out += np.tile(self.tile, (h // 8 + 1, w // 8 + 1, 1))[:h, :w]
        out = np.clip(np.round((out + np.float32(0.5)) * np.float32(255.0)), 0, 255).astype(np.uint8)
        return list(out)
