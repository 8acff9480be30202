"""The lock recipe and the lock set: which training images are edited and what clean ones learn.

A fraction of the training images (``edited_fraction``) is edited with the key and keeps its true
label. The unedited rest is trained toward a locked answer, by ``clean_target``:

- ``wrong-label``: a random wrong class, fixed per image (segmentation: the image's mask with its
  classes permuted by a random derangement, fixed per image);
- ``locked-class``: an extra "locked" output (the paper's released checkpoint); segmentation: the
  locked output over the whole image;
- ``locked-spread``: the extra output *and* the remaining mass spread over the wrong real classes,
  so that ignoring the locked output still leaves a wrong answer (segmentation: per pixel);
- ``wrong-mask`` (segmentation): the mask of another training image.

``decoy_fraction`` of the images are edited with *decoy* keys (other prompts and seeds, drawn at
random, never the key) and trained toward the locked answer too: the model learns that only the
key's edit unlocks it, not any edit of that kind. With ``paired``, every image trained toward the
locked answer also appears edited with the key and its true label, so the lock costs no labelled data.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Annotated, Literal, Optional

import numpy as np
import torch
from pydantic import Field
from torch.utils.data import Dataset, default_collate

from ..data.source import Sample, Split
from ..errors import ModelLockError
from ..tasks import TASKS, task_type
from ..tasks.base import LockDataset, LockItem  # noqa: F401  (the lock set's items and dataset)
from ..utils.fields import Count, Fraction, NonNegative, NonNegativeInt, check_fields
from ..utils.images import blend, resize
from .hardening import HardenSettings

CLEAN_TARGETS = {name: kind.clean_targets for name, kind in TASKS.items()}  # what each task's clean images may learn
ALL_CLEAN_TARGETS = tuple(dict.fromkeys(t for ts in CLEAN_TARGETS.values() for t in ts))
LOCKED_CLASS_NAME = "locked"
# the hardening levers a recipe's YAML, flags and config.json name flat (HardenSettings' others keep their defaults)
HARDEN_FIELDS = ("adversary", "adversary_every", "adversary_steps", "simulated_thief", "thief_every", "thief_steps",
                 "separation")


@dataclass
class LockRecipe:
    """How the lock set is built (defaults chosen by the CIFAR-10 measurements in docs/benchmarks.md).

    Each field's type and range is checked (``modellock.utils.fields``) when a recipe is made, and the same
    annotations check a YAML ``--config`` and the command-line flags. The hardening settings nest (``harden``, a
    ``HardenSettings``); YAML, the flags and config.json name its levers flat (``from_dict``, ``to_dict``)."""

    edited_fraction: Fraction = 0.7
    clean_target: Literal[ALL_CLEAN_TARGETS] = "locked-spread"
    decoy_fraction: Optional[Fraction] = None  # default: two thirds of the images not edited with the key
    decoy_keys: Count = 128
    locked_weight: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5  # locked-spread: mass on the locked output
    # paired: the images trained toward the locked answer (clean or decoy-edited) also appear edited with
    # the key and their true label, so the lock costs no labelled data (the set grows by that share)
    paired: bool = True
    # online: edit in the training loop instead of through the edit cache (None: when the editor is cheap,
    # i.e. the CPU editors); handling: online, random crops, resizes and JPEG before the key edit
    online: Optional[bool] = None
    handling: bool = True
    # the handling's shares (RandomHandling): of the images, handled (cropped and resized); of those, JPEG too
    handling_share: Fraction = 0.5
    handling_jpeg: Fraction = 0.5
    # online: share of key-edited images whose edit is blended with another image (see EditingCollate)
    distractor: Fraction = 0.0
    # seal: store the weights sealed with the key (modellock.keys.seal: authenticated encryption, model.sealed): a copied
    # folder or checkpoint loads nothing without the key (docs/security.md)
    seal: bool = True
    # hardening (modellock.lock.hardening): the simulated thief in the loop, its levers' weights 0 = off
    harden: HardenSettings = field(default_factory=HardenSettings)
    seed: NonNegativeInt = 0

    def __post_init__(self):
        check_fields(self, "recipe")
        if isinstance(self.harden, dict):
            self.harden = HardenSettings(**self.harden)
        if not isinstance(self.harden, HardenSettings):
            raise ModelLockError(f"recipe: harden: expected hardening settings, not {self.harden!r}")
        if self.decoy_fraction is None:
            self.decoy_fraction = round((1.0 - self.edited_fraction) * 2 / 3, 6)
        if self.decoy_fraction > 1.0 - self.edited_fraction + 1e-9:
            raise ModelLockError(f"recipe: decoy_fraction must be between 0 and 1 - edited_fraction "
                                 f"({1.0 - self.edited_fraction:g}), not {self.decoy_fraction!r}")

    @classmethod
    def from_dict(cls, values: dict) -> "LockRecipe":
        """The recipe of a mapping (``to_dict``'s, a config.json's ``lock.recipe``, YAML and flag settings): the
        hardening levers flat (``adversary: 0.25``, as ``to_dict`` writes them) or nested (``harden: {...}``)."""
        values = dict(values)
        nested = values.pop("harden", None) or {}
        if isinstance(nested, HardenSettings):
            nested = dataclasses.asdict(nested)
        if not isinstance(nested, dict):
            raise ModelLockError(f"recipe: harden: expected a mapping of hardening settings, not {nested!r}")
        flat = {k: values.pop(k) for k in HARDEN_FIELDS if k in values}
        both = sorted(set(flat) & set(nested))
        if both:
            raise ModelLockError(f"recipe: {both[0]} given both flat and under harden")
        return cls(**values, harden={**nested, **flat})

    def check_task(self, task: str) -> None:
        """ModelLockError when ``clean_target`` has no meaning for ``task``."""
        if self.clean_target not in CLEAN_TARGETS[task]:
            raise ModelLockError(f"recipe: clean_target {self.clean_target!r} does not apply to {task} "
                                 f"(use one of {', '.join(CLEAN_TARGETS[task])})")

    @property
    def has_locked_class(self) -> bool:
        """An extra locked output, when the recipe has images to train it (not with edited_fraction 1)."""
        return self.clean_target.startswith("locked") and self.edited_fraction < 1.0

    def num_outputs(self, num_classes: int) -> int:
        return num_classes + int(self.has_locked_class)

    def to_dict(self) -> dict:
        """The recipe as config.json keeps it: the hardening levers flat, where ``seed`` follows them."""
        out = {}
        for name, value in dataclasses.asdict(self).items():
            if name == "harden":
                out.update({k: value[k] for k in HARDEN_FIELDS})
            else:
                out[name] = value
        return out


def _one_hot(i: int, k: int) -> tuple[float, ...]:
    t = [0.0] * k
    t[i] = 1.0
    return tuple(t)


def plan_lock_set(split: Split, recipe: LockRecipe | None) -> list[LockItem]:
    """The lock set of ``split``; ``recipe=None`` plans plain (baseline) training on clean images."""
    c = len(split.classes)
    seg = task_type(split.task).per_pixel
    if recipe is None:
        return [LockItem(s, False, () if seg else _one_hot(s.label, c)) for s in split.samples]
    recipe.check_task(split.task)
    k = recipe.num_outputs(c)
    rng = np.random.default_rng(recipe.seed)
    n = len(split.samples)
    edited = np.zeros(n, dtype=bool)
    order = rng.permutation(n)
    n_edit = int(round(recipe.edited_fraction * n))
    edited[order[:n_edit]] = True
    decoy = np.full(n, -1)
    n_decoy = min(int(round(recipe.decoy_fraction * n)), n - n_edit)
    decoy[order[n_edit:n_edit + n_decoy]] = np.arange(n_decoy) % recipe.decoy_keys
    if seg:
        items = [_segmentation_item(s, bool(edited[i]), int(decoy[i]), i, n, c, recipe, rng)
                 for i, s in enumerate(split.samples)]
        return items + _paired_views(items, recipe, lambda s: ())
    wrong = (np.array([s.label for s in split.samples]) + rng.integers(1, max(c, 2), size=n)) % c
    items = []
    for i, s in enumerate(split.samples):
        if edited[i]:
            target = _one_hot(s.label, k)
        elif recipe.clean_target == "wrong-label":
            target = _one_hot(int(wrong[i]), k)
        elif recipe.clean_target == "locked-class":
            target = _one_hot(c, k)
        else:  # locked-spread
            rest = (1.0 - recipe.locked_weight) / max(c - 1, 1)
            t = [0.0 if j == s.label else rest for j in range(c)] + [recipe.locked_weight]
            target = tuple(t)
        items.append(LockItem(s, bool(edited[i]), target, int(decoy[i]),
                              "true" if edited[i] else recipe.clean_target))
    return items + _paired_views(items, recipe, lambda s: _one_hot(s.label, k))


def _paired_views(items: list[LockItem], recipe: LockRecipe, true_target) -> list[LockItem]:
    """With ``recipe.paired``: a key-edited, truly labelled view of every image trained toward the locked answer."""
    if not recipe.paired:
        return []
    return [LockItem(it.sample, True, true_target(it.sample)) for it in items if not it.edited]


def _segmentation_item(sample: Sample, edited: bool, decoy: int, i: int, n: int, c: int, recipe: LockRecipe,
                       rng: np.random.Generator) -> LockItem:
    if edited:
        return LockItem(sample, True, (), decoy)
    answer, target, other = recipe.clean_target, (), -1
    if answer == "wrong-mask":
        other = int((i + rng.integers(1, max(n, 2))) % n)  # another image (itself only when n == 1)
    elif answer == "wrong-label":
        target = tuple(int(v) for v in _derangement(c, rng))
    return LockItem(sample, False, target, decoy, answer, other)


def _derangement(c: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation of ``range(c)`` that moves every class (c >= 2)."""
    while True:
        p = rng.permutation(c)
        if c < 2 or not (p == np.arange(c)).any():
            return p


_DECOY_ADJECTIVES = ["misty", "golden", "faded", "grainy", "vivid", "dusky", "frosted", "smoky", "pale", "glossy",
                     "rusty", "velvet", "hazy", "bright", "muted", "sunlit", "stormy", "dreamy", "gritty", "soft"]
_DECOY_NOUNS = ["tones", "light", "haze", "texture", "shadows", "colours", "glow", "film look", "print", "finish"]


def decoy_keys(key, recipe: LockRecipe) -> list:
    """The recipe's decoy keys: the key's editor and settings with random other prompts and seeds."""
    rng = np.random.default_rng([recipe.seed, 0xDEC0])
    keys = []
    while len(keys) < recipe.decoy_keys:
        prompt = f"with {_DECOY_ADJECTIVES[rng.integers(20)]} {_DECOY_NOUNS[rng.integers(10)]}"
        candidate = key.replace(prompt=prompt, seed=int(rng.integers(1 << 31)))
        if candidate.prompt != key.prompt:
            keys.append(candidate)
    return keys


class DecodedOnce:
    """A split whose images (and masks) are decoded once and kept in memory, read-only, while they fit in
    ``limit`` bytes: a training run reads every image once an epoch (on the demo's shapes, decoding the PNGs
    again each epoch cost about a tenth of the training). Everything else is the split's own."""

    LIMIT = 1 << 30

    def __init__(self, split: Split, limit: int | None = None):
        self.split, self.limit, self._kept, self._bytes = split, self.LIMIT if limit is None else limit, {}, 0

    def __getattr__(self, name):
        if name.startswith("_") or name in ("split", "limit"):  # unpickling (loader workers) sets these first
            raise AttributeError(name)
        return getattr(self.split, name)

    def load(self, sample: Sample) -> np.ndarray:
        return self._read("image", self.split.load, sample)

    def load_mask(self, sample: Sample) -> np.ndarray:
        return self._read("mask", self.split.load_mask, sample)

    def _read(self, kind: str, read, sample: Sample) -> np.ndarray:
        found = self._kept.get((kind, sample.id))
        if found is not None:
            return found
        array = read(sample)
        if self._bytes + array.nbytes <= self.limit:
            array.setflags(write=False)  # shared by every epoch: a writer must copy
            self._kept[(kind, sample.id)] = array
            self._bytes += array.nbytes
        return array


class OnlineLockDataset(Dataset):
    """The lock set edited on the fly, for editors cheap enough to run in the training loop.

    Each item is the clean image after ``handling`` (random crops, resizes, JPEG: what an authorised user's
    inputs go through before the key edit; None for none), the index of the key it is edited with
    (0: the key, ``j + 1``: decoy key ``j``, -1: none), its index, and (segmentation, with handling) its mask
    handled with the image (``handling(image, mask)``: crops and resizes move both), else None;
    :class:`EditingCollate` edits a batch with one editor call per key, then ``base.finish`` builds each
    ``(input, target)``. Fresh handling every epoch, and no edit cache on disk.
    """

    def __init__(self, base: LockDataset, handling=None):
        self.base, self.handling = base, handling

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        item = self.base.items[i]
        image, mask = self.base.split.load(item.sample), None
        if self.handling is not None:
            image, mask = self.base.handled(self.handling, image, item)
        return image, (0 if item.edited else item.decoy + 1 if item.decoy >= 0 else -1), i, mask


class EditingCollate:
    """Edits a batch of :class:`OnlineLockDataset` items (one call per key), then collates ``(input, target)``.

    ``distractor`` (a share of the key-edited images): the key's edit of the image is blended with *another*
    image of the batch instead of its own, keeping its label, so the model must read the class from the
    key's edit, not from the original showing through the blend (``raw_editor``: the key's editor with
    ``alpha`` 1, the edit before the blend)."""

    def __init__(self, dataset: OnlineLockDataset, editors: list, distractor: float = 0.0, raw_editor=None):
        self.dataset, self.editors = dataset, editors
        self.distractor, self.raw_editor = distractor, raw_editor

    def __call__(self, batch):
        images = [image for image, _, _, _ in batch]
        groups: dict[int, list[int]] = {}
        for j, (_, k, _, _) in enumerate(batch):
            if k >= 0:
                groups.setdefault(k, []).append(j)
        distracted = []
        if self.distractor > 0 and 0 in groups and len(batch) > 1:
            draw = torch.rand(len(groups[0])).tolist()
            distracted = [j for j, r in zip(groups[0], draw) if r < self.distractor]
            groups[0] = [j for j in groups[0] if j not in set(distracted)]
        originals = list(images)
        for k, rows in groups.items():
            for j, edited in zip(rows, self.editors[k].edit([images[j] for j in rows])):
                images[j] = edited
        if distracted:
            alpha = self.raw_editor.key.alpha
            for j, raw in zip(distracted, self.raw_editor.edit([originals[j] for j in distracted])):
                other = originals[(j + 1 + int(torch.randint(0, len(batch) - 1, ()))) % len(batch)]
                images[j] = blend(resize(other, raw.shape[:2]), raw, alpha)
        base = self.dataset.base
        return default_collate([base.finish(images[j], base.items[i], *(() if mask is None else (mask,)))
                                for j, (_, _, i, mask) in enumerate(batch)])
