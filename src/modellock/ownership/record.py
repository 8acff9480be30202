"""The evidence file: the owner's private record for proving that a suspect model was derived from theirs.

One safetensors file (no pickle), written with mode 0600 like a key:

- ``images.<set>``: the query images of each sample set (``N x S x S x 3`` uint8), sent to a suspect as they
  are: ``sac_w`` (test images the unlocked model gets wrong) and ``sac_w_key`` (their edits with the key: the
  key's effect, not the key), ``sac_m`` (CutMix images) and ``sac_m_key``, ``key_clean`` (random test images),
  ``key_edited`` (their edits with the key) and ``key_wrong`` (their edits with random wrong keys: the settings'
  ``wrong_keys`` keys, image ``i`` edited with key ``i mod wrong_keys``; or, with ``wrong_per_image`` = ``W``, each
  image with every key, ``W`` consecutive rows per image);
- ``truth.key_clean``: the true answer to each ``key_clean`` image as a distribution (a one-hot label; for
  segmentation the share of its mask's pixels per class);
- ``owner.<mode>.<set>``: the opened locked network's outputs on each image as it is (``N x K`` per-image
  class distributions over the real classes; its answers on ``*_key`` are the unlocked answers to the clean
  set); mode ``probs`` (softmax; segmentation: the mean over pixels) and, for segmentation, ``areas`` (the
  share of pixels per predicted class);
- ``independent.<i>.<mode>.<set>``: the same for each independent model the thresholds are calibrated on;
- ``weights.<i>``: a sketch of the opened network's layer ``i`` (``weights.py``: random projections of its
  filters, which cannot be turned back into weights), for the white-box weights test;
- the header's metadata ``evidence``: JSON with the task, classes, preprocessing, the owner model's identity
  (architecture, weights sha256), the settings, the independent models' descriptions, every image set's
  sha256. Never the key, its prompt or its fingerprint (nor the wrong keys' prompts: drawn, used, forgotten).

Format 2 adds the settings ``wrong_keys`` and ``wrong_per_image``; format 1 records (one wrong key, one row per
image) are read with both 1.

The record is private: the key-edited images show what the key does, and the sample sets are what a thief
would need to evade verification. Keep it like the key.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load, save

from ..errors import ModelLockError
from ..utils.atomic import write_bytes_atomic

FORMAT = "modellock-evidence/2"
READ_FORMATS = ("modellock-evidence/1", FORMAT)  # 1: one wrong key per image
SETS = ("sac_w", "sac_w_key", "sac_m", "sac_m_key", "key_clean", "key_edited", "key_wrong")
# sets asked together: the same images clean, edited with the key (and with a wrong key)
GROUPS = {"sac_w": ("sac_w", "sac_w_key"), "sac_m": ("sac_m", "sac_m_key"),
          "key": ("key_clean", "key_edited", "key_wrong")}
MODES = ("probs", "areas")


@dataclass
class Evidence:
    """The record in memory: ``meta`` (JSON-ready), ``images[set]``, ``owner[mode][set]``,
    ``independent[i][mode][set]`` (float32 ``N x K``) and ``truth`` (the ``key_clean`` images' true answers)."""

    meta: dict
    images: dict[str, np.ndarray]
    owner: dict[str, dict[str, np.ndarray]]
    independent: list[dict[str, dict[str, np.ndarray]]] = field(default_factory=list)
    truth: np.ndarray | None = None
    weights: list[np.ndarray] = field(default_factory=list)

    # ------------------------------------------------------------------ properties
    @property
    def task(self) -> str:
        return self.meta["task"]

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def num_classes(self) -> int:
        return len(self.meta["classes"])

    @property
    def image_size(self) -> int:
        return int(self.meta["preprocessing"]["image_size"])

    @property
    def settings(self) -> dict:
        return self.meta["settings"]

    @property
    def wrong_per_image(self) -> int:
        """Rows of ``key_wrong`` per key-feature image: 1, or ``W`` when each image is edited with every wrong key."""
        return len(self.images["key_wrong"]) // max(len(self.images["key_clean"]), 1)

    def wrong_rows(self, indices) -> np.ndarray:
        """The rows of ``key_wrong`` of the key-feature images ``indices`` (each image's rows, in order)."""
        w = self.wrong_per_image
        return (np.asarray(indices, dtype=np.int64)[:, None] * w + np.arange(w)).reshape(-1)

    @property
    def num_queries(self) -> int:
        """Images a suspect answers for a full verification (each image is one query)."""
        return sum(len(v) for v in self.images.values())

    def set_sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.images.items()}

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> Path:
        """Write the record atomically, readable by its owner only (0600)."""
        tensors = {f"images.{k}": np.ascontiguousarray(v, dtype=np.uint8) for k, v in self.images.items()}
        for mode, sets in self.owner.items():
            for s, a in sets.items():
                tensors[f"owner.{mode}.{s}"] = np.ascontiguousarray(a, dtype=np.float32)
        for i, a in enumerate(self.weights):
            tensors[f"weights.{i}"] = np.ascontiguousarray(a, dtype=np.float32)
        if self.truth is not None:
            tensors["truth.key_clean"] = np.ascontiguousarray(self.truth, dtype=np.float32)
        for i, modes in enumerate(self.independent):
            for mode, sets in modes.items():
                for s, a in sets.items():
                    tensors[f"independent.{i}.{mode}.{s}"] = np.ascontiguousarray(a, dtype=np.float32)
        meta = {**self.meta, "format": FORMAT,
                "images_sha256": {k: _digest(v) for k, v in self.images.items()}}
        self.meta = meta
        path = Path(path)
        write_bytes_atomic(save(tensors, metadata={"evidence": json.dumps(meta)}), path, mode=0o600)
        os.chmod(path, 0o600)  # an existing file keeps its mode through the rename's source: set it anyway
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Evidence":
        """Read a record; ModelLockError naming the file when it is not one or was altered."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ModelLockError(f"evidence file {path}: not found") from None
        except IsADirectoryError:
            raise ModelLockError(f"evidence file {path}: is a folder, not an evidence file") from None
        try:
            tensors = load(data)
            header = _header(data)
            meta = json.loads(header["__metadata__"]["evidence"])
        except (SafetensorError, ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise ModelLockError(f"evidence file {path}: not an evidence file (written by `modellock evidence`)") \
                from None
        if not isinstance(meta, dict) or meta.get("format") not in READ_FORMATS:
            raise ModelLockError(f"evidence file {path}: format {meta.get('format') if isinstance(meta, dict) else None!r}"
                                 f" is not one of {', '.join(map(repr, READ_FORMATS))}")
        images, owner, independent, truth, weights = {}, {}, {}, None, {}
        for name, a in tensors.items():
            parts = name.split(".")
            if parts[0] == "images" and len(parts) == 2:
                images[parts[1]] = a
            elif name == "truth.key_clean":
                truth = a
            elif parts[0] == "weights" and len(parts) == 2 and parts[1].isdigit():
                weights[int(parts[1])] = a
            elif parts[0] == "owner" and len(parts) == 3:
                owner.setdefault(parts[1], {})[parts[2]] = a
            elif parts[0] == "independent" and len(parts) == 4 and parts[1].isdigit():
                independent.setdefault(int(parts[1]), {}).setdefault(parts[2], {})[parts[3]] = a
            else:
                raise ModelLockError(f"evidence file {path}: unexpected tensor {name!r}")
        for k in SETS:
            if k not in images:
                raise ModelLockError(f"evidence file {path}: no image set {k!r}")
            if meta.get("images_sha256", {}).get(k) != _digest(images[k]):
                raise ModelLockError(f"evidence file {path}: image set {k!r} does not match its sha256 "
                                     "(altered or corrupt)")
        if truth is None:
            raise ModelLockError(f"evidence file {path}: no true answers to the key-feature images")
        w = (meta.get("settings") or {}).get("wrong_per_image", 1)
        if not isinstance(w, int) or w < 1 or len(images["key_wrong"]) != w * len(images["key_clean"]):
            raise ModelLockError(f"evidence file {path}: {len(images['key_wrong'])} wrong-key images for "
                                 f"{len(images['key_clean'])} key-feature images and wrong_per_image {w!r}")
        return cls(meta, images, owner, [independent[i] for i in sorted(independent)], truth,
                   [weights[i] for i in sorted(weights)])


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(f"{a.shape}".encode() + np.ascontiguousarray(a).tobytes()).hexdigest()


def _header(data: bytes) -> dict:
    """The JSON header of a safetensors file (its metadata included)."""
    n = int.from_bytes(data[:8], "little")
    if n <= 0 or n > len(data) - 8:
        raise ValueError("bad header length")
    return json.loads(data[8:8 + n])
