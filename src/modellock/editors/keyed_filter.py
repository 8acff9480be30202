"""``keyed-filter``: a CPU key editor for demos and tests, no downloaded weights.

The key's prompt and seed seed a random colour transform (a uniformly random orthogonal map of RGB
space with channel gains) followed by a random per-channel 3x3 texture filter, and optionally a
keyed 8x8 texture tile (``params.pattern``). The same (prompt, seed) always gives the same edit;
another prompt gives a different transform; shapes stay recognisable, and a model learns to tell
its edits from clean images, so it locks well (docs/benchmarks.md compares it with a subtler
bounded rotation). Its key space is far weaker than a diffusion
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
    version = 2  # 1 was a bounded RGB rotation
    # strength: 1.0 by default, smaller is subtler (and locks worse); pattern: amplitude (0..1) of a keyed
    # 8x8 texture tile added after the filter, 0 (off) by default.
    param_types = {"strength": float, "pattern": float}
    default_batch_size = 4096

    def __init__(self, key, device=None, batch_size=None):
        super().__init__(key, device, batch_size)
        strength = float(key.params.get("strength", 1.0))
        rng = _rng(key)
        q, r = np.linalg.qr(rng.normal(size=(3, 3)))
        q = q * np.sign(np.diag(r))  # a uniformly random orthogonal matrix (rotation or reflection)
        gains = rng.uniform(0.6, 1.4, size=3)
        mix = np.eye(3) + strength * (q * gains[:, None] - np.eye(3))
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
