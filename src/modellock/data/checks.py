"""Checks of a data split before any work: one clear error (or a warning) instead of minutes of compute.

``check_data(source, split, image_size, classes, training)`` is called by lock, train, eval and attack
before they edit or train anything. Errors (``DataError``) name the split, class, file or value:

- fewer than two classes, or (training) a class with no images in the split;
- a label or mask value beyond the classes list; a mask whose size differs from its image's; a file
  that is not an image;
- (with ``classes``) data whose classes differ from the model's;
- images smaller than ``MIN_SIDE`` pixels.

Warnings (``DataWarning``, one ``warning:`` line on the command line) are for what a user may mean:
a class with no images in another split (or, evaluating, in this one), a segmentation class with no
pixels, images smaller than the model's input (they are upscaled).

Image sizes come from file headers (no decoding); segmentation masks are read once per check.
"""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..errors import DataError, DataWarning
from .sources import ImageSource, Split

MIN_SIDE = 8  # pixels: below this an "image" is an icon or a mistake, not something to learn from


def pick_split(source: ImageSource, name: str | None, default: str = "train") -> str:
    """The split to use: ``name`` when given; else ``default`` when the source has it, or its only split."""
    if name is None and default not in source.splits and len(source.splits) == 1:
        return next(iter(source.splits))
    name = name or default
    if name not in source.splits:
        raise DataError(f"{source.spec}: no split {name!r} (splits: {', '.join(source.splits)}; "
                        "choose one with --split)")
    return name


def check_data(source: ImageSource, split: str, image_size: int | None = None, classes: list[str] | None = None,
               training: bool = True) -> None:
    """DataError for data no model can learn from (or be scored on); DataWarning for what may be meant.

    ``image_size`` is the model's input size; ``classes`` the model's class names (evaluation of a model);
    ``training`` makes a class without images in ``split`` an error rather than a warning.
    """
    data = source.split(split)
    where = f"{source.spec}: split {split!r}"
    if not data.samples:
        raise DataError(f"{where} has no images")
    if classes is not None and list(classes) != list(source.classes):
        raise DataError(f"{where}: its classes differ from the model's: {_class_difference(classes, source.classes)}")
    if source.task == "segmentation":
        present = _check_masks(data, where)
    else:
        present = _check_labels(data, where)
    _check_classes(source, data, where, present, training)
    if image_size:
        _check_image_sizes(data, where, image_size)


def _class_difference(model: list[str], data: list[str]) -> str:
    missing = [c for c in model if c not in data]
    extra = [c for c in data if c not in model]
    if not missing and not extra:
        return f"the same names in another order (model: {', '.join(model[:10])}; data: {', '.join(data[:10])})"
    parts = ([f"the data has no class {_names(missing)}"] if missing else []) + \
        ([f"the model has no class {_names(extra)}"] if extra else [])
    return "; ".join(parts)


def _names(names: list[str], n: int = 5) -> str:
    shown = ", ".join(repr(c) for c in names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


def _check_labels(data: Split, where: str) -> Counter:
    """Images per class index; DataError for a label that is not a class index."""
    counts = Counter(s.label for s in data.samples)
    bad = [label for label in counts if not 0 <= label < len(data.classes)]
    if bad:
        sample = next(s for s in data.samples if s.label == bad[0])
        raise DataError(f"{where}: image {sample.path or sample.id} has label {bad[0]}, not a class index "
                        f"(0..{len(data.classes) - 1})")
    return counts


def _check_masks(data: Split, where: str) -> Counter:
    """Pixels per class over the split's masks; each mask is checked (channels, size, values) as it is read."""
    counts = np.zeros(len(data.classes), dtype=np.int64)
    for s in tqdm(data.samples, desc=f"checking {len(data.samples)} masks of split {data.name!r}", unit="mask",
                  delay=2.0, leave=False):
        mask = data.load_mask(s)  # DataError naming the mask: not single-channel, wrong size, bad value
        valid = mask[mask != data.ignore_index]
        counts += np.bincount(valid.ravel(), minlength=len(data.classes))[: len(data.classes)]
    return Counter({i: int(n) for i, n in enumerate(counts) if n})


def _check_classes(source: ImageSource, data: Split, where: str, present: Counter, training: bool) -> None:
    unit = "pixels" if source.task == "segmentation" else "images"
    if len(present) < 2:
        found = ", ".join(repr(data.classes[i]) for i in sorted(present)) or "none"
        message = f"{where} has {unit} of {len(present)} class{'es' if len(present) != 1 else ''} only ({found})"
        if training or len(source.classes) < 2:
            raise DataError(f"{message}; a model needs at least two classes to learn from")
        warnings.warn(f"{message}: the score covers that class alone", DataWarning, stacklevel=3)
    missing = [i for i in range(len(data.classes)) if i not in present]
    if missing:
        message = f"{where} has no {unit} of class {_names([data.classes[i] for i in missing])}"
        if training and source.task != "segmentation":
            elsewhere = [n for n, other in source.splits.items() if n != data.name
                         and any(s.label == missing[0] for s in other.samples)]
            found = f" (class {data.classes[missing[0]]!r} has images in split {elsewhere[0]!r})" if elsewhere else ""
            raise DataError(f"{message}{found}: the model could never learn it; add its images or remove the class")
        warnings.warn(message + ("" if training else ": not scored"), DataWarning, stacklevel=3)
    if training and source.task != "segmentation":
        for name, other in source.splits.items():
            absent = sorted(set(range(len(source.classes))) - {s.label for s in other.samples})
            if name != data.name and absent:
                warnings.warn(f"{source.spec}: split {name!r} has no images of class "
                              f"{_names([source.classes[i] for i in absent])}: its score will not cover them",
                              DataWarning, stacklevel=3)


def _check_image_sizes(data: Split, where: str, image_size: int) -> None:
    """From file headers: DataError for a file that is not an image or one smaller than MIN_SIDE;
    a warning when images are smaller than the model's input."""
    files = [s.path for s in data.samples if s.path is not None]
    smaller, smallest = 0, None
    for path in files:
        try:
            with Image.open(path) as im:
                w, h = im.size
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise DataError(f"{path}: cannot read image ({type(e).__name__}: {e})") from None
        if min(w, h) < MIN_SIDE:
            raise DataError(f"{path}: image is {w}x{h} pixels; images must be at least {MIN_SIDE}x{MIN_SIDE}")
        if min(w, h) < image_size:
            smaller += 1
            if smallest is None or min(w, h) < min(smallest[1]):
                smallest = (path, (w, h))
    if smaller:
        path, (w, h) = smallest
        warnings.warn(f"{where}: {smaller} of {len(files)} images are smaller than the model's {image_size}x"
                      f"{image_size} input and are upscaled (smallest: {path}, {w}x{h})", DataWarning, stacklevel=3)
