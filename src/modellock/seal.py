"""Sealed weights: the model folder stores its weights masked by the key, so stolen weights are noise.

ModelLock's edit makes a model answer wrongly on clean inputs, but the weights themselves stay a good
network: a thief fine-tunes them, or learns an input adapter in front of them, and recovers most of the
model (docs/benchmarks.md). Sealing moves the protection of the weights at rest to the key: every weight
tensor ``W`` is stored as ``W + s * N``, with ``N`` standard normal noise drawn from a generator seeded by
the key (scrypt of the canonical key, then the tensor's name) and ``s`` a few times the tensor's own RMS,
so the stored tensor is mostly noise. The key removes the mask exactly (in float64, to float32 rounding);
any other key, or none, leaves a network of noise. Normalisation statistics (running means and variances)
and integer buffers are stored as they are: without the weights they say nothing useful.

What sealing does not change: a thief who gets the unsealed weights (from the memory of a machine that
runs the unlocked model, e.g. the unlock service) faces the ModelLock lock alone.
"""

from __future__ import annotations

import hashlib

import torch

SCHEME = "keyed-gaussian/v1"
SCALE = 4.0  # mask RMS / the tensor's RMS
_SALT = b"modellock/seal/v1"
_UNSEALED = ("running_mean", "running_var", "num_batches_tracked")


def _secret(key) -> bytes:
    return hashlib.scrypt(key.canonical(), salt=_SALT, n=2**14, r=8, p=1, dklen=32)


def _sealed_names(state: dict) -> list[str]:
    return [n for n, t in state.items() if t.is_floating_point() and not n.endswith(_UNSEALED)]


def _noise(secret: bytes, name: str, shape) -> torch.Tensor:
    seed = int.from_bytes(hashlib.sha256(secret + name.encode()).digest()[:8], "little") & ((1 << 63) - 1)
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def seal_state(state: dict, key) -> tuple[dict, dict]:
    """``(sealed state, seal record for config.json)``: every weight masked with the key's noise."""
    secret, out, scales = _secret(key), dict(state), {}
    for name in _sealed_names(state):
        t = state[name].detach().cpu()
        scale = SCALE * max(float(t.double().pow(2).mean().sqrt()), 1e-2)
        scales[name] = scale
        out[name] = (t.double() + scale * _noise(secret, name, t.shape)).to(t.dtype)
    return out, {"scheme": SCHEME, "scales": scales}


def unseal_state(state: dict, key, record: dict) -> dict:
    """The state with ``key``'s mask removed (with another key: a different noise, no model)."""
    if record.get("scheme") != SCHEME:
        from .errors import ModelLockError

        raise ModelLockError(f"unknown seal scheme {record.get('scheme')!r} (this modellock reads {SCHEME})")
    secret, out = _secret(key), dict(state)
    for name, scale in record["scales"].items():
        t = state[name].detach().cpu()
        out[name] = (t.double() - scale * _noise(secret, name, t.shape)).to(t.dtype)
    return out
