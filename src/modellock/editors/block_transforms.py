"""Block-wise key transforms (AprilPyone & Kiya, 2020-2021) as editors: the related secret-key locks.

Each image is cut into MxM blocks and every block, flattened to a vector of M*M*3 values (rows,
columns, channels), goes through the same secret transform:

- ``pixel-shuffle``: a secret permutation of the M*M*3 positions;
- ``negative-positive``: a secret set of half the positions whose values flip, v -> 255 - v;
- ``ffx``: each value is encrypted with a keyed bijection of 0..255 that differs per position.

The key's prompt is the secret passphrase and its seed selects the transform: every table is
derived with HMAC-SHA256 keyed by the prompt, over the editor's name, the seed and the block size.
``params.block_size`` (default 4) is M; the string ``"patch"`` asks for the patch size of the model
being locked, which :func:`resolve_block_size` fills in before anything is edited. Diffusion fields
(model, steps, guidance) are ignored; ``resolution`` must be 0 (the blocks are cut at the image's
own size), and ``alpha`` is 1 by default (the papers apply the transform fully).

Images whose sides are not multiples of M keep their size: the last row and column of blocks are
partial, and a partial block of h x w pixels is transformed by the same key restricted to the
positions it has (NP and FFX: the same per-position maps; shuffling: the key's permutation with the
missing positions left out, which is again a permutation). So every edit is deterministic, keeps
the image's size and is exactly undone by the editor's ``inverse``, whatever the size.

FFX follows the construction of the FFX mode (Bellare, Rogaway & Spies, 2010) with the parameters
FFX-A2 gives for 8-bit binary messages: a balanced Feistel network on two 4-bit halves, XOR as the
addition, 36 rounds, the block position as the tweak; its round function is HMAC-SHA256 instead of
AES-CBC-MAC. It is not a certified FF1/FF3 implementation and is not meant to encrypt data.
"""

from __future__ import annotations

import hashlib
import hmac
from abc import abstractmethod
from typing import Sequence

import numpy as np

from ..errors import KeyFileError, ModelLockError
from ..utils.images import ImageLike, to_uint8_rgb
from . import editor_class, register_editor
from .base import Editor

DEFAULT_BLOCK_SIZE = 4
MAX_BLOCK_SIZE = 64
PATCH = "patch"
FFX_ROUNDS = 36  # FFX-A2's round count for 8-bit messages


class _BlockSizeType(type):
    def __instancecheck__(cls, value) -> bool:
        if isinstance(value, bool):
            return False
        return (isinstance(value, int) and 1 <= value <= MAX_BLOCK_SIZE) or value == PATCH


class BlockSize(metaclass=_BlockSizeType):
    """The type of ``params.block_size`` for the key's validation: an int 1..64, or ``"patch"``."""


# key.py reports a bad param as "field 'params.block_size' must be <type name>, got <type>"
BlockSize.__name__ = f"an int from 1 to {MAX_BLOCK_SIZE} or '{PATCH}'"


def _prf(secret: bytes, *parts) -> bytes:
    """HMAC-SHA256 of the parts, joined unambiguously."""
    return hmac.new(secret, "\x00".join(str(p) for p in parts).encode(), hashlib.sha256).digest()


def _key_secret(key, editor: str, block_size: int) -> bytes:
    """The transform's secret: the prompt is the passphrase; editor, seed and block size select the transform."""
    return hmac.new(key.prompt.encode(), f"modellock/{editor}/v1\x00seed={key.seed}\x00block={block_size}".encode(),
                    hashlib.sha256).digest()


def _secret_order(secret: bytes, label: str, n: int) -> np.ndarray:
    """A keyed pseudo-random permutation of ``range(n)``: positions sorted by their HMAC values."""
    values = np.array([int.from_bytes(_prf(secret, label, i)[:8], "little") for i in range(n)], dtype=np.uint64)
    return np.argsort(values, kind="stable")


def block_size_of(key) -> int:
    """The key's block size; ModelLockError when it is still ``"patch"`` (not resolved against a model)."""
    value = key.params.get("block_size", DEFAULT_BLOCK_SIZE)
    if value == PATCH:
        raise ModelLockError(
            f"key field 'params.block_size' is '{PATCH}': it follows the patch size of the model being locked "
            "and must be resolved before editing (modellock.editors.block_transforms.resolve_block_size); "
            "lock, unlock and eval do this, or set an integer block size"
        )
    if not isinstance(value, BlockSize):
        raise KeyFileError(f"key: field 'params.block_size' must be {BlockSize.__name__}, got {value!r}")
    return int(value)


def model_patch_size(model, image_size: int = 224) -> int:
    """The square patch size of a ViT: ``patch_embed.patch_size`` (timm) or ``patch_size`` (torchvision).

    ``model`` is a module, a locked model (its ``.model``), or a backbone name, which is built on
    PyTorch's meta device without weights just to read its patch size.
    """
    name = None
    if isinstance(model, str):
        # lazy: torch; the editor list and the key commands stay light
        import torch
        from ..nets.backbones import create_backbone

        name = model
        with torch.device("meta"):
            model = create_backbone(name, 2, image_size)
    elif not hasattr(model, "patch_embed") and not hasattr(model, "patch_size") and hasattr(model, "model"):
        model = model.model  # a LockedModel
    name = name or getattr(model, "backbone_spec", {}).get("name") or type(model).__name__
    size = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    if size is None:
        size = getattr(model, "patch_size", None)
    if size is None:
        raise ModelLockError(f"key field 'params.block_size' is '{PATCH}', but model {name} has no patches "
                             "(no patch_embed.patch_size or patch_size); set an integer block size")
    sizes = {int(s) for s in (size if isinstance(size, (tuple, list)) else (size,))}
    if len(sizes) != 1:
        raise ModelLockError(f"key field 'params.block_size' is '{PATCH}', but model {name} has non-square "
                             f"patches {tuple(size)}; set an integer block size")
    return sizes.pop()


def resolve_block_size(key, model, image_size: int = 224):
    """The key with ``params.block_size = "patch"`` replaced by ``model``'s patch size.

    Returns ``key`` itself for every other key (other editors, integer block sizes), so callers can
    apply it to any key. ``model``: see :func:`model_patch_size`.
    """
    try:
        cls = editor_class(key.editor)
    except KeyFileError:
        return key
    if not issubclass(cls, BlockTransformEditor) or key.params.get("block_size") != PATCH:
        return key
    size = model_patch_size(model, image_size)
    if not isinstance(size, BlockSize):
        raise ModelLockError(f"key field 'params.block_size' is '{PATCH}', but the model's patch size {size} "
                             f"is not {BlockSize.__name__}")
    return key.replace(params={**key.params, "block_size": size})


def _apply_blockwise(x: np.ndarray, m: int, fn) -> np.ndarray:
    """Apply ``fn(blocks, positions)`` to every MxM block of a (B, H, W, 3) uint8 batch.

    ``blocks`` is (n_blocks, L): each block flattened in (row, column, channel) order; ``positions``
    (L,) are the flattened positions those values take in a full MxM block (a partial block at the
    right or bottom edge holds a subset). ``fn`` returns an array of the same shape.
    """
    b, h, w, c = x.shape
    out = np.empty_like(x)
    hf, wf = h - h % m, w - w % m
    for r0, r1, bh in ((0, hf, m), (hf, h, h - hf)):
        for c0, c1, bw in ((0, wf, m), (wf, w, w - wf)):
            if r1 <= r0 or c1 <= c0:
                continue
            ny, nx = (r1 - r0) // bh, (c1 - c0) // bw
            region = x[:, r0:r1, c0:c1].reshape(b, ny, bh, nx, bw, c).transpose(0, 1, 3, 2, 4, 5)
            i, j, k = np.meshgrid(np.arange(bh), np.arange(bw), np.arange(c), indexing="ij")
            positions = ((i * m + j) * c + k).ravel()
            blocks = fn(region.reshape(-1, bh * bw * c), positions)
            out[:, r0:r1, c0:c1] = blocks.reshape(b, ny, nx, bh, bw, c).transpose(0, 1, 3, 2, 4, 5).reshape(
                b, r1 - r0, c1 - c0, c)
    return out


class BlockTransformEditor(Editor):
    """Base of the block-wise key transforms: the key's block size, secret, and an exact inverse."""

    key_defaults = {"model": "", "resolution": 0, "alpha": 1.0, "steps": 1,
                    "params": {"block_size": DEFAULT_BLOCK_SIZE}}
    param_types = {"block_size": BlockSize}
    default_batch_size = 256
    geometric_augmentation = False  # crops and flips would move and mirror the blocks

    @classmethod
    def resolve_for_model(cls, key, model, image_size: int):
        return resolve_block_size(key, model, image_size)

    def __init__(self, key, device=None, batch_size=None):
        super().__init__(key, device, batch_size)
        if key.resolution != 0:
            raise KeyFileError(f"key: field 'resolution' must be 0 for editor {self.name!r} (blocks are cut at "
                               f"the image's own size; resizing the edit back would mix the blocks), "
                               f"got {key.resolution}")
        self.block_size = block_size_of(key)
        self.positions = self.block_size * self.block_size * 3  # length of a flattened block
        self._secret = _key_secret(key, self.name, self.block_size)

    @abstractmethod
    def _forward(self, blocks: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Transform ``blocks`` (n, L) whose values sit at ``positions`` (L,) of a full block."""

    @abstractmethod
    def _backward(self, blocks: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Undo :meth:`_forward`."""

    def edit_batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        return list(_apply_blockwise(np.stack(images), self.block_size, self._forward))

    def inverse(self, images: Sequence[ImageLike]) -> list[np.ndarray]:
        """Undo the transform exactly: ``inverse(edit(images)) == images`` (with the key's alpha at 1)."""
        if self.key.alpha != 1.0:
            raise ModelLockError(f"editor {self.name!r}: the inverse is exact only for a key with alpha = 1 "
                                 f"(this key blends the edit with its original, alpha = {self.key.alpha})")
        return [_apply_blockwise(to_uint8_rgb(im)[None], self.block_size, self._backward)[0] for im in images]


@register_editor("pixel-shuffle")
class PixelShuffleEditor(BlockTransformEditor):
    """Block-wise pixel shuffling: one secret permutation of the M*M*3 values inside every MxM block."""

    def __init__(self, key, device=None, batch_size=None):
        super().__init__(key, device, batch_size)
        #: output position t of a full block takes the value at input position ``permutation[t]``
        self.permutation = _secret_order(self._secret, "permutation", self.positions)
        self._sources: dict[tuple, np.ndarray] = {}

    def _local_sources(self, positions: np.ndarray) -> np.ndarray:
        """For a (partial) block holding ``positions``: where each output value comes from, as local indices."""
        cache_key = positions.tobytes()
        if cache_key not in self._sources:
            local = np.full(self.positions, -1)
            local[positions] = np.arange(positions.size)
            self._sources[cache_key] = local[self.permutation[np.isin(self.permutation, positions)]]
        return self._sources[cache_key]

    def _forward(self, blocks, positions):
        return blocks[:, self._local_sources(positions)]

    def _backward(self, blocks, positions):
        return blocks[:, np.argsort(self._local_sources(positions))]


@register_editor("negative-positive")
class NegativePositiveEditor(BlockTransformEditor):
    """Block-wise negative/positive transform: values at a secret half of the block positions become 255 - v."""

    def __init__(self, key, device=None, batch_size=None):
        super().__init__(key, device, batch_size)
        #: True where a full block's value is flipped; exactly half the positions (rounded down)
        self.flip_mask = np.zeros(self.positions, dtype=bool)
        self.flip_mask[_secret_order(self._secret, "flip", self.positions)[: self.positions // 2]] = True

    def _forward(self, blocks, positions):
        return np.where(self.flip_mask[positions], np.uint8(255) - blocks, blocks)

    _backward = _forward  # the transform is its own inverse


def ffx_round_tables(secret: bytes, positions: int, rounds: int = FFX_ROUNDS) -> np.ndarray:
    """The Feistel round functions, (positions, rounds, 16) values in 0..15.

    ``F(position, round, half) = HMAC-SHA256(secret, "ffx" | position | round)[half] mod 16``: one
    HMAC per (position, round) gives the function on all 16 values of the 4-bit input half.
    """
    table = np.empty((positions, rounds, 16), dtype=np.uint8)
    for p in range(positions):
        for r in range(rounds):
            table[p, r] = np.frombuffer(_prf(secret, "ffx", p, r)[:16], dtype=np.uint8) & 0x0F
    return table


def ffx_encrypt(values: np.ndarray, rounds_table: np.ndarray) -> np.ndarray:
    """Encrypt uint8 ``values`` (P, N) with the round functions (P, R, 16) of their positions."""
    a, b = (values >> 4).astype(np.uint8), (values & 0x0F).astype(np.uint8)
    for r in range(rounds_table.shape[1]):
        a, b = b, a ^ np.take_along_axis(rounds_table[:, r, :], b, axis=1)
    return (a << 4) | b


def ffx_decrypt(values: np.ndarray, rounds_table: np.ndarray) -> np.ndarray:
    """Invert :func:`ffx_encrypt`: the Feistel rounds run backwards."""
    a, b = (values >> 4).astype(np.uint8), (values & 0x0F).astype(np.uint8)
    for r in reversed(range(rounds_table.shape[1])):
        a, b = b ^ np.take_along_axis(rounds_table[:, r, :], a, axis=1), a
    return (a << 4) | b


@register_editor("ffx")
class FFXEditor(BlockTransformEditor):
    """Block-wise format-preserving encryption (FFX-style Feistel) of the values at each block position."""

    def __init__(self, key, device=None, batch_size=None):
        super().__init__(key, device, batch_size)
        rounds = ffx_round_tables(self._secret, self.positions)
        every_value = np.tile(np.arange(256, dtype=np.uint8), (self.positions, 1))
        #: ``encrypt_table[p, v]``: the encryption of value v at block position p; a bijection of 0..255 per p
        self.encrypt_table = ffx_encrypt(every_value, rounds)
        self.decrypt_table = ffx_decrypt(every_value, rounds)

    def _forward(self, blocks, positions):
        return self.encrypt_table[positions[None, :], blocks]

    def _backward(self, blocks, positions):
        return self.decrypt_table[positions[None, :], blocks]
