"""Semantic-segmentation sources: a folder of images with per-pixel class masks, or a torchvision dataset.

Folder layout (``open_source`` detects it by the ``images/`` and ``masks/`` folders)::

    root/
      classes.txt                 optional: one class name per line, line i = class index i
      train/images/<path>.jpg     train/masks/<path>.png   (same relative path and stem)
      test/images/...             test/masks/...

A root that holds ``images/`` and ``masks/`` itself is one split named ``all``. Masks are single-channel
images of class indices; ``ignore_index`` (255) marks unscored pixels. Without ``classes.txt`` the class
count is 1 + the largest mask value (other than ``ignore_index``), found by a scan cached per file set.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torchvision.datasets as tvd
from tqdm.auto import tqdm

from ..errors import DataError
from ..utils.atomic import write_bytes_atomic
from ..utils.images import to_uint8_rgb
from ..utils.paths import cache_root
from .source import IMAGE_EXTENSIONS, LABEL_TASK, MASK_TASK, ImageSource, Sample, Split, read_mask, visible_dirs

CLASSES_FILE = "classes.txt"
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


# ------------------------------------------------------------------------------------------- folders
def is_segmentation_folder(path: Path) -> bool:
    """Whether ``path`` holds ``images/`` and ``masks/`` folders (one split)."""
    return (path / "images").is_dir() and (path / "masks").is_dir()


def is_segmentation_layout(root: Path) -> bool:
    """Whether ``root`` is one split or holds split folders of the segmentation layout."""
    return is_segmentation_folder(root) or any(is_segmentation_folder(d) for d in visible_dirs(root))


def open_segmentation_folder(spec: str, root: Path, ignore_index: int = 255) -> ImageSource:
    """The splits of a segmentation folder; DataError for an image without its mask or a bad classes.txt."""
    if is_segmentation_folder(root):
        named = {"all": root}
    else:
        named = {d.name: d for d in visible_dirs(root) if is_segmentation_folder(d)}
    samples = {name: _paired_samples(d) for name, d in named.items()}
    samples = {name: s for name, s in samples.items() if s}
    if not samples:
        raise DataError(f"{spec}: no images found in the segmentation layout ([<split>/]images/<image>)")
    if (root / CLASSES_FILE).is_file():
        classes = read_classes_file(root / CLASSES_FILE)
    else:
        masks = [s.mask for lst in samples.values() for s in lst]
        classes = [f"class_{i}" for i in range(count_mask_classes(masks, ignore_index, spec))]
    splits = {name: Split(name, classes, s, task=MASK_TASK, ignore_index=ignore_index)
              for name, s in samples.items()}
    return ImageSource(spec, classes, splits, root, task=MASK_TASK, ignore_index=ignore_index)


def _files(folder: Path) -> list[Path]:
    """Image files under ``folder`` at any depth, hidden files and folders skipped, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [Path(dirpath, f) for f in filenames
                  if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS]
    return sorted(found)


def _paired_samples(split_dir: Path) -> list[Sample]:
    """One sample per image under ``images/``, paired with the mask of the same relative path and stem."""
    images, masks = split_dir / "images", split_dir / "masks"
    by_stem: dict[str, Path] = {}
    for m in _files(masks):  # a .png mask wins over another format with the same stem
        key = m.relative_to(masks).with_suffix("").as_posix()
        if key not in by_stem or m.suffix.lower() == ".png":
            by_stem[key] = m
    samples = []
    for f in _files(images):
        rel = f.relative_to(images)
        mask = by_stem.get(rel.with_suffix("").as_posix())
        if mask is None:
            raise DataError(f"{f}: no mask for this image (expected {masks / rel.with_suffix('.png')})")
        samples.append(Sample(id=rel.as_posix(), label=-1, path=f, mask=mask))
    return samples


def read_classes_file(path: Path) -> list[str]:
    """Class names, one per line (line i = class i); trailing empty lines ignored."""
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read class names ({type(e).__name__}: {e})") from None
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise DataError(f"{path}: no class names (one per line)")
    for i, name in enumerate(lines):
        if not name:
            raise DataError(f"{path}: line {i + 1} is empty (one class name per line)")
        if name in lines[:i]:
            raise DataError(f"{path}: class {name!r} appears twice (line {i + 1})")
    return lines


def count_mask_classes(masks: list[Path], ignore_index: int, spec: str = "") -> int:
    """1 + the largest mask value other than ``ignore_index``; the scan is cached per (paths, sizes, mtimes)."""
    h = hashlib.sha256(f"{ignore_index}\n".encode())
    for m in masks:
        st = m.stat()
        h.update(f"{os.path.abspath(m)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    cache = cache_root() / "sources" / f"mask-classes-{h.hexdigest()[:32]}.json"
    try:
        return int(json.loads(cache.read_text())["num_classes"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    top = -1
    for m in tqdm(masks, desc="scanning masks for classes", unit="mask", delay=2.0, leave=False):
        try:
            values = read_mask(m)
        except (OSError, ValueError, SyntaxError) as e:
            raise DataError(f"{m}: cannot read mask ({type(e).__name__}: {e})") from None
        values = values[values != ignore_index]
        if values.size and values.min() < 0:
            raise DataError(f"{m}: mask value {int(values.min())} is not a class index (negative)")
        if values.size:
            top = max(top, int(values.max()))
    if top < 1:
        raise DataError(f"{spec}: the masks hold {'no class' if top < 0 else 'only class 0'} besides ignore_index "
                        f"{ignore_index}; pass another ignore_index or add {CLASSES_FILE}")
    write_bytes_atomic(json.dumps({"num_classes": top + 1}).encode(), cache)
    return top + 1


# -------------------------------------------------------------------------------------- torchvision
@dataclass(frozen=True)
class TorchvisionSegmentation:
    """How to read one torchvision segmentation dataset: its splits' arguments, class names, and the
    dataset's mask values by class index (any other value becomes ``ignore_index``)."""

    name: str
    classes: tuple[str, ...]
    splits: dict[str, dict]
    values: tuple[int, ...]
    segmentation_only: bool


TORCHVISION_SEGMENTATION = {
    "VOCSegmentation": TorchvisionSegmentation(
        "VOCSegmentation", VOC_CLASSES,
        {"train": {"year": "2012", "image_set": "train"}, "test": {"year": "2012", "image_set": "val"}},
        values=tuple(range(len(VOC_CLASSES))), segmentation_only=True),
    "OxfordIIITPet": TorchvisionSegmentation(  # trimap: 1 pet, 2 background, 3 border (ignored)
        "OxfordIIITPet", ("pet", "background"),
        {"train": {"split": "trainval", "target_types": "segmentation"},
         "test": {"split": "test", "target_types": "segmentation"}},
        values=(1, 2), segmentation_only=False),
}


def _adapter(name: str) -> TorchvisionSegmentation | None:
    return next((a for n, a in TORCHVISION_SEGMENTATION.items() if n.lower() == name.lower()), None)


def torchvision_task(name: str, task: str | None) -> str:
    """The task a ``torchvision:NAME`` source serves under the requested ``task`` (None = its default)."""
    adapter = _adapter(name)
    if adapter is None:
        return LABEL_TASK
    if adapter.segmentation_only:
        if task == LABEL_TASK:
            raise DataError(f"torchvision:{name}: a segmentation dataset; expected task 'segmentation'")
        return MASK_TASK
    return task or LABEL_TASK


def open_torchvision_segmentation(spec: str, ignore_index: int = 255) -> ImageSource:
    """A ``torchvision:NAME`` segmentation dataset, downloaded into ``cache_root()/torchvision/NAME``."""
    adapter = _adapter(spec.split(":", 1)[1])
    cls = getattr(tvd, adapter.name)
    root = cache_root() / "torchvision" / adapter.name
    lut = np.full(256, ignore_index, dtype=np.int64)
    lut[list(adapter.values)] = np.arange(len(adapter.values))
    classes = list(adapter.classes)
    splits = {}
    for split, kwargs in adapter.splits.items():
        try:
            ds = cls(root=str(root), download=True, **kwargs)
        except (RuntimeError, OSError, ValueError) as e:
            reason = " ".join(f"{type(e).__name__}: {e}".split())
            raise DataError(f"{spec}: cannot download or read the {split} split ({reason})") from None
        samples = [Sample(id=f"{i:08d}", label=-1) for i in range(len(ds))]
        splits[split] = Split(split, classes, samples,
                              _reader=lambda s, ds=ds: to_uint8_rgb(ds[int(s.id)][0]),
                              _mask_reader=lambda s, ds=ds, w=f"{spec} {split}": _target_mask(ds, s, lut, w),
                              task=MASK_TASK, ignore_index=ignore_index)
    return ImageSource(spec, classes, splits, root=None, task=MASK_TASK, ignore_index=ignore_index)


def _target_mask(ds, sample: Sample, lut: np.ndarray, where: str) -> np.ndarray:
    """The dataset's target of ``sample`` mapped to class indices, checked against its image's size."""
    image, target = ds[int(sample.id)]
    raw, (w, h) = np.asarray(target), image.size
    if raw.ndim != 2:
        raise DataError(f"{where} sample {sample.id}: target has shape {raw.shape}; expected an HxW mask")
    if raw.shape != (h, w):
        raise DataError(f"{where} sample {sample.id}: mask is {raw.shape[0]}x{raw.shape[1]} but its image "
                        f"is {h}x{w} (HxW)")
    return lut[np.clip(raw, 0, 255)]
