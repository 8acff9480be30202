"""``keyed-net``: a CPU key editor whose key space is a deep, multi-scale, spatially varying network.

The CPU stand-in for the diffusion editor where there is no GPU. The key's prompt and seed go through a
slow KDF (scrypt) into the seed of every weight of a small image-to-image network,
so its key space is the KDF's (the prompt's entropy), not a handful of colour parameters a thief can fit:

- three scales (full, 1/2, 1/4 resolution), each two 3x3 convolutions with periodic and saturating
  non-linearities (``sin``, ``tanh``): a texture that depends on the content in a keyed, non-monotone way;
- a keyed spatial modulation of every feature map: a few random plane waves over the image's
  normalised coordinates, so the edit varies across the image (and resizes with it);
- a keyed colour rotation of the input (60-120 degrees about a random axis, as ``keyed-filter``) added
  to the network's output before a saturating output layer, so shapes and colours stay recognisable.

The edit is blended with the original by the key's ``alpha`` (0.5), as the paper blends. ``params.strength``
(default 1) scales the network's texture against the colour-rotated input.

Exact and batch-independent: images are edited at their own size in float32, in chunks of exactly
``CHUNK`` images (the last one padded with blank images), so every image goes through the same kernels
with the same shapes whatever batch it comes in. Across different CPUs the last float bit may differ;
after rounding to uint8 an edit can then differ by one level in rare pixels (as the diffusion editor's
edits do across GPUs).

A thief who knows this code still has to find the prompt (keygen's are 64+ bits) or fit the network's
~10k weights through the locked model: the ``editor-family-adapter`` attack does exactly that.
"""

from __future__ import annotations

import hashlib

import numpy as np

from . import register_editor
from .base import Editor
from .networks import SCALES, keyed_net_forward

CHANNELS = 8
WAVES = 3  # plane waves per feature map in the spatial modulation
CHUNK = 4
_SALT = b"modellock/keyed-net/v1"


def key_seed(key) -> int:
    """A 128-bit seed from the key's prompt and seed through scrypt (N=2^12, r=8: about 20 ms)."""
    material = f"keyed-net\x00{key.prompt}\x00{key.seed}".encode()
    digest = hashlib.scrypt(material, salt=_SALT, n=2**12, r=8, p=1, dklen=16)
    return int.from_bytes(digest, "little")


def draw_weights(seed: int, strength: float = 1.0) -> dict[str, np.ndarray]:
    """Every weight of the network, drawn from ``seed`` (float32 arrays, torch conv layout)."""
    rng = np.random.default_rng(seed)
    c = CHANNELS
    w: dict[str, np.ndarray] = {}
    for s in SCALES:
        w[f"conv1_{s}"] = rng.normal(0, 1.6 / np.sqrt(27), (c, 3, 3, 3))
        w[f"bias1_{s}"] = rng.uniform(-np.pi, np.pi, c)
        w[f"conv2_{s}"] = rng.normal(0, 1.4 / np.sqrt(9 * c), (c, c, 3, 3))
        w[f"bias2_{s}"] = rng.normal(0, 0.3, c)
        w[f"freq_{s}"] = rng.normal(0, 2.5, (c, WAVES, 2))  # cycles across the image
        w[f"phase_{s}"] = rng.uniform(-np.pi, np.pi, (c, WAVES))
        w[f"amp_{s}"] = rng.uniform(0.2, 0.6, (c, WAVES)) / WAVES
    w["out"] = rng.normal(0, 1.0 / np.sqrt(len(SCALES) * c), (3, len(SCALES) * c, 1, 1)) * strength
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.uniform(60.0, 120.0)) * rng.choice([-1.0, 1.0])
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    w["colour"] = (np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross) * rng.uniform(
        0.8, 1.2, (3, 1))
    w["colour_bias"] = rng.uniform(-0.2, 0.2, 3)
    return {k: np.asarray(v, dtype=np.float32) for k, v in w.items()}


@register_editor("keyed-net")
class KeyedNetEditor(Editor):
    """A keyed multi-scale network (weights from the key through scrypt); exact and batch-independent (CPU)."""

    edits_in_loop = True
    max_batch_pixels = 1 << 22  # 4096 images of 32x32, 64 of 256x256

    key_defaults = {"model": "", "resolution": 0, "steps": 1}
    version = 1
    param_types = {"strength": float}
    default_batch_size = 512

    def __init__(self, key, device=None, batch_size=None):
        super().__init__(key, device, batch_size)
        # lazy: torch; the editor list and the key commands stay light
        import torch

        self._torch = torch
        arrays = draw_weights(key_seed(key), float(key.params.get("strength", 1.0)))
        self.weights = {k: torch.from_numpy(v) for k, v in arrays.items()}

    @classmethod
    def attack_family(cls, key):
        """The same network with every weight trainable, started at ``key``'s weights."""
        # lazy: torch (the key commands do not load it)
        from .families import KeyedNetFamily

        return KeyedNetFamily(draw_weights(key_seed(key), float(key.params.get("strength", 1.0))), key.alpha)

    def edit_batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        torch = self._torch
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)
        out = []
        with torch.inference_mode():
            for i in range(0, len(x), CHUNK):
                chunk = x[i:i + CHUNK]
                n = len(chunk)
                if n < CHUNK:  # the same kernel shapes for every image: pad with blank images
                    chunk = torch.cat([chunk, chunk.new_zeros((CHUNK - n, *chunk.shape[1:]))])
                out.append(keyed_net_forward(chunk, self.weights, torch)[:n])
        y = torch.cat(out).mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)
        return list(y.permute(0, 2, 3, 1).numpy())
