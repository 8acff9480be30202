"""What a data source is: samples, splits (read, hashed, subset), the source, masks, and the folder helpers
every layout reader uses."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ..errors import DataError, ImageError
from ..utils.images import decode_image, load_image

SPLIT_NAMES = ("train", "val", "valid", "validation", "test")
IMAGE_EXTENSIONS = {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
# the task each layout serves: images with one label (class folders) or with a mask (images/ + masks/); the data
# layer knows samples with labels or masks, the task types above it know the rest
LABEL_TASK, MASK_TASK = "classification", "segmentation"
TASKS = (LABEL_TASK, MASK_TASK)
_MASK_MODES = {"1", "L", "P", "I", "I;16", "I;16L", "I;16B"}  # single-channel integer images


@dataclass(frozen=True)
class Sample:
    """One image: ``id`` is stable across runs (``<class>/<file>``, ``<image path>`` or ``<index>``).

    ``label`` is the class index (-1 for segmentation); ``mask`` is a segmentation sample's mask file.
    """

    id: str
    label: int
    path: Path | None = None
    mask: Path | None = None


@dataclass
class Split:
    """The samples of one split, with the means to read and hash them."""

    name: str
    classes: list[str]
    samples: list[Sample]
    _reader: Callable[[Sample], np.ndarray] | None = field(default=None, repr=False)
    _mask_reader: Callable[[Sample], np.ndarray] | None = field(default=None, repr=False)
    task: str = "classification"
    ignore_index: int = 255

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def per_pixel(self) -> bool:
        """Its samples have masks (a class per pixel), not one label each."""
        return self.task == MASK_TASK

    def load(self, sample: Sample) -> np.ndarray:
        """The image as HxWx3 uint8; DataError naming the file when it cannot be read."""
        try:
            return self._reader(sample) if self._reader else load_image(sample.path)
        except ImageError:  # already names the file and what is wrong with it
            raise
        except (OSError, ValueError, SyntaxError) as e:
            where = sample.path if sample.path else f"{self.name}/{sample.id}"
            raise DataError(f"{where}: cannot read image ({type(e).__name__}: {e})") from None

    def load_mask(self, sample: Sample) -> np.ndarray:
        """The mask as HxW int64 class indices (``ignore_index`` kept); DataError naming the mask file when
        it cannot be read, is not single-channel, differs in size from its image or holds a value that is
        not a class index."""
        where = sample.mask if sample.mask else f"{self.name}/{sample.id}"
        if not self.per_pixel:
            raise DataError(f"{where}: split {self.name!r} is a {self.task} split; it has no masks")
        try:
            mask = np.asarray(self._mask_reader(sample) if self._mask_reader else read_mask(sample.mask),
                              dtype=np.int64)
        except (OSError, ValueError, SyntaxError) as e:
            raise DataError(f"{where}: cannot read mask ({type(e).__name__}: {e})") from None
        if mask.ndim != 2:
            raise DataError(f"{where}: mask has shape {mask.shape}; expected HxW class indices")
        if sample.path is not None and sample.mask is not None:
            _check_same_size(sample.path, sample.mask, mask.shape)
        check_mask_values(mask, len(self.classes), self.ignore_index, where)
        return mask

    def source_hash(self, sample: Sample) -> str:
        """sha256 of the file's bytes (file sources) or of the decoded pixels (others)."""
        if sample.path is not None:
            h = hashlib.sha256()
            try:
                with open(sample.path, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
            except OSError as e:
                raise DataError(f"{sample.path}: cannot read file ({e.strerror})") from None
            return h.hexdigest()
        return _pixel_hash(self.load(sample))

    def load_and_hash(self, sample: Sample) -> tuple[np.ndarray, str]:
        """``(load(sample), source_hash(sample))`` reading a file once; the same errors as each."""
        if sample.path is None:
            a = self.load(sample)
            return a, _pixel_hash(a)
        if self._reader is not None:
            return self.load(sample), self.source_hash(sample)
        try:
            data = Path(sample.path).read_bytes()
        except OSError as e:
            raise DataError(f"{sample.path}: cannot read file ({e.strerror})") from None
        try:
            return decode_image(data, name=str(sample.path)), hashlib.sha256(data).hexdigest()
        except ImageError:  # names the file, not the buffer it was decoded from
            raise
        except (OSError, ValueError, SyntaxError) as e:
            raise DataError(f"{sample.path}: cannot read image ({type(e).__name__}: {e})") from None

    def subset(self, limit: int | None, seed: int = 0) -> "Split":
        """At most ``limit`` samples, the same for the same seed: class-balanced for classification,
        a random draw for segmentation."""
        if limit is None or limit >= len(self.samples):
            return self
        rng = np.random.default_rng(seed)
        if self.per_pixel:
            chosen = [self.samples[i] for i in rng.choice(len(self.samples), limit, replace=False)]
        else:
            chosen = self._balanced(limit, rng)
        chosen.sort(key=lambda s: s.id)
        return replace(self, samples=chosen)

    def _balanced(self, limit: int, rng: np.random.Generator) -> list[Sample]:
        by_class: dict[int, list[Sample]] = {}
        for s in self.samples:
            by_class.setdefault(s.label, []).append(s)
        for lst in by_class.values():
            rng.shuffle(lst)
        chosen: list[Sample] = []
        queues = [by_class[c] for c in sorted(by_class)]
        i = 0
        while len(chosen) < limit:  # round-robin over classes keeps the subset balanced
            for q in queues:
                if i < len(q) and len(chosen) < limit:
                    chosen.append(q[i])
            i += 1
        return chosen


def _pixel_hash(a: np.ndarray) -> str:
    return hashlib.sha256(f"{a.shape}".encode() + a.tobytes()).hexdigest()


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """A single-channel mask image (grey, palette indices, 16/32-bit) as HxW int64; DataError otherwise."""
    with Image.open(path) as im:
        if im.mode not in _MASK_MODES:
            raise DataError(f"{path}: mask is a {im.mode} image with {len(im.getbands())} channels; expected "
                            "single-channel class indices (8-bit grey or palette PNG)")
        return np.asarray(im).astype(np.int64)


def check_mask_values(mask: np.ndarray, n_classes: int, ignore_index: int, where) -> None:
    """DataError naming ``where`` when a value other than ``ignore_index`` is not in 0..n_classes-1."""
    bad = ((mask < 0) | (mask >= n_classes)) & (mask != ignore_index)
    if bad.any():
        raise DataError(f"{where}: mask value {int(mask[bad][0])} is not a class index "
                        f"(0..{n_classes - 1}, or ignore_index {ignore_index})")


def _check_same_size(image: Path, mask_file: Path, shape: tuple[int, int]) -> None:
    try:
        with Image.open(image) as im:
            w, h = im.size
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{image}: cannot read image ({type(e).__name__}: {e})") from None
    if (h, w) != tuple(shape):
        raise DataError(f"{mask_file}: mask is {shape[0]}x{shape[1]} (HxW) but its image {image} is {h}x{w}")


@dataclass
class ImageSource:
    """A dataset: class names and its splits by name."""

    spec: str
    classes: list[str]
    splits: dict[str, Split]
    root: Path | None = None
    task: str = "classification"
    ignore_index: int = 255

    @property
    def per_pixel(self) -> bool:
        """Its samples have masks (a class per pixel), not one label each."""
        return self.task == MASK_TASK

    def split(self, name: str) -> Split:
        if name not in self.splits:
            raise DataError(f"{self.spec}: no split {name!r} (splits: {', '.join(self.splits) or 'none'})")
        return self.splits[name]

    def limit(self, name: str, limit: int | None, seed: int = 0) -> None:
        """Keep at most ``limit`` samples of split ``name`` (see ``Split.subset``)."""
        if limit is not None:
            self.splits[name] = self.split(name).subset(limit, seed)

    @property
    def source_id(self) -> str:
        """A short id of where the data came from, for naming caches."""
        where = str(self.root.resolve()) if self.root else self.spec
        return hashlib.sha256(where.encode()).hexdigest()[:16]


def visible_dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def image_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def is_image_folder(path: Path) -> bool:
    return any(image_files(d) for d in visible_dirs(path))
