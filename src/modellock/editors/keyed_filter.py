"""``keyed-filter``: a CPU key editor for demos and tests, no downloaded weights.

The key's prompt and seed seed a random colour transform (a rotation of 35-75 degrees about a
random axis of RGB space, and channel gains)
followed by a random per-channel 3x3 texture filter. The same (prompt, seed) always gives the same
edit; another prompt gives a different transform; shapes stay recognisable, and a model learns to
tell its edits from clean images, so it locks well. Its key space is far weaker than a diffusion
model's (a thief who knows the method can fit a colour transform and filter from examples): use it
to demonstrate and test the pipeline, not to protect a model.
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
    """Keyed colour rotation + texture filter; exact and batch-independent (elementwise float32 ops)."""

    key_defaults = {"model": "", "resolution": 0, "steps": 1}
    # strength: 1.0 by default, smaller is subtler (and locks worse); pattern: amplitude (0..1) of a keyed
    # 8x8 texture tile added after the filter, 0 (off) by default.
    param_types = {"strength": float, "pattern": float}
    default_batch_size = 4096

    def __init__(self, key, device=None, batch_size=None):
        super().__init__(key, device, batch_size)
        strength = float(key.params.get("strength", 1.0))
        rng = _rng(key)
        # A rotation of RGB space about a random axis by 35-75 degrees: strong enough to tell apart,
        # and never so far that blending with the original (alpha) cancels the image's contrast.
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        theta = np.deg2rad(rng.uniform(35, 75)) * rng.choice([-1.0, 1.0])
        cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        rotation = np.eye(3) + np.sin(theta) * cross + (1 - np.cos(theta)) * cross @ cross
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

    def edit_batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        x = np.stack(images).astype(np.float32) / np.float32(255.0) - np.float32(0.5)  # B,H,W,3
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
