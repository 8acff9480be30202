"""Image sources for classification and segmentation: folders, .tar.gz archives, torchvision datasets.

``open_source(spec)`` accepts
- a folder with one subfolder per split (``train/``, ``test/``), each ``<class>/<image>``;
  a folder whose only child is such a folder (an archive's root) is entered;
  a plain ``<class>/<image>`` folder is one split named ``all``;
- a segmentation folder: ``<split>/images/<image>`` + ``<split>/masks/<image stem>.png``
  (see ``modellock/segmentation/data.py``), detected by its ``images/`` and ``masks/`` folders;
- a ``.tar.gz``/``.tgz``/``.tar`` of such a folder, extracted once into the cache;
- ``torchvision:NAME`` (e.g. ``torchvision:CIFAR10``, ``torchvision:VOCSegmentation``), downloaded into
  the cache when online.

Class indices are the sorted union of class folder names, so they agree across splits.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import shutil
import tarfile
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ..errors import DataError, ImageError
from ..utils.images import decode_image, load_image, to_uint8_rgb
from ..utils.paths import cache_root

SPLIT_NAMES = ("train", "val", "valid", "validation", "test")
IMAGE_EXTENSIONS = {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
TASKS = ("classification", "segmentation")
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
        if self.task != "segmentation":
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
        if self.task == "segmentation":
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


def open_source(spec: str | os.PathLike, limits: dict[str, int] | None = None, seed: int = 0,
                task: str | None = None, ignore_index: int = 255) -> ImageSource:
    """Open a folder, archive or ``torchvision:NAME`` source; ``limits`` caps splits by name.

    ``task`` None detects it from the layout; "classification" or "segmentation" insist on one.
    ``ignore_index`` is the mask value of unscored pixels (segmentation).
    """
    if task is not None and task not in TASKS:
        raise DataError(f"task: {task!r} is not one of {', '.join(TASKS)}")
    spec = str(spec)
    if spec.startswith("torchvision:"):
        source = _open_torchvision(spec, task, ignore_index)
    else:
        path = Path(spec).expanduser()
        if not path.exists():
            raise DataError(f"{spec}: no such file or folder")
        if path.is_file():
            if not _is_archive(path):
                raise DataError(f"{spec}: not a folder or a .tar.gz/.tgz/.tar archive")
            path = _extract_archive(path)
        source = _open_folder(spec, path, task, ignore_index)
    for name, limit in (limits or {}).items():
        source.limit(name, limit, seed)
    return source


# ------------------------------------------------------------------------------------------ folders
def _is_archive(path: Path) -> bool:
    return path.name.endswith((".tar.gz", ".tgz", ".tar"))


def _visible_dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def _is_image_folder(path: Path) -> bool:
    return any(_image_files(d) for d in _visible_dirs(path))


def _open_folder(spec: str, path: Path, task: str | None, ignore_index: int) -> ImageSource:
    from ..segmentation import data as segmentation

    root = path
    while True:  # enter an archive's single root folder, e.g. cifar10/
        dirs = _visible_dirs(root)
        if len(dirs) == 1 and not _image_files(root) and not _is_image_folder(root) \
                and dirs[0].name not in SPLIT_NAMES and not segmentation.is_segmentation_folder(dirs[0]):
            root = dirs[0]
        else:
            break
    if segmentation.is_segmentation_layout(root):
        if task == "classification":
            raise DataError(f"{spec}: this is a segmentation layout (images/ + masks/ folders); classification "
                            "expects an ImageFolder layout (<split>/<class>/<image>)")
        return segmentation.open_segmentation_folder(spec, root, ignore_index)
    if task == "segmentation":
        raise DataError(f"{spec}: expected a segmentation layout ([<split>/]images/<image> with "
                        "[<split>/]masks/<image stem>.png); found no images/ and masks/ folders")
    split_dirs = [d for d in _visible_dirs(root) if _is_image_folder(d)]
    if split_dirs:
        named = {d.name: d for d in split_dirs}
    elif _is_image_folder(root):
        named = {"all": root}
    else:
        raise DataError(f"{spec}: no images found in the ImageFolder layout (<split>/<class>/<image>)")
    classes = sorted({c.name for d in named.values() for c in _visible_dirs(d) if _image_files(c)})
    index = {c: i for i, c in enumerate(classes)}
    splits = {}
    for name, d in named.items():
        samples = [
            Sample(id=f"{c.name}/{f.name}", label=index[c.name], path=f)
            for c in _visible_dirs(d) if c.name in index for f in _image_files(c)
        ]
        splits[name] = Split(name, classes, samples)
    return ImageSource(spec, classes, splits, root)


def _extract_archive(archive: Path) -> Path:
    """Extract once into the cache (temp folder, then rename); later calls reuse it. Only regular files and
    folders inside the archive's folder are extracted; any other member (a link, a device) refuses the archive
    before anything is written, whatever this Python's extraction filters do (``_safe_members``)."""
    st = archive.stat()
    ident = hashlib.sha256(f"{archive.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_root() / "sources" / f"{archive.name.split('.')[0]}-{ident}"
    if target.is_dir():
        return target
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    tmp.mkdir(parents=True)
    try:
        with tarfile.open(archive) as tar:
            members = _safe_members(tar, archive)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, members=members, filter="data")
            else:
                tar.extractall(tmp, members=members)
        try:
            os.rename(tmp, target)
        except OSError:  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
    except (tarfile.TarError, EOFError, OSError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"{archive}: cannot extract archive ({type(e).__name__}: {e})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _safe_members(tar: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    """Every member of ``tar``; DataError naming the first that is not a regular file or a folder, or whose
    path leaves the archive's folder (absolute, or through ``..``). Links are refused outright: no chain of
    them can lead a later member outside (the CVE-2025-4517 family of ``filter="data"`` bypasses)."""
    members = tar.getmembers()
    for m in members:
        if not (m.isreg() or m.isdir()):
            kind = ("a symbolic link" if m.issym() else "a hard link" if m.islnk() else "a device" if m.isdev()
                    else "a special member")
            raise DataError(f"{archive}: member {m.name!r} is {kind}; only regular files and folders are extracted")
        parts = m.name.replace("\\", "/").split("/")
        if m.name.startswith(("/", "\\")) or ".." in parts or (parts and parts[0].endswith(":")):
            raise DataError(f"{archive}: member {m.name!r} has a path outside the archive's folder")
    return members


# -------------------------------------------------------------------------------------- torchvision
_TV_SPLITS = {"train": ("train", "trainval"), "test": ("test", "val")}


def _open_torchvision(spec: str, task: str | None, ignore_index: int) -> ImageSource:
    import torchvision.datasets as tvd

    from ..segmentation import data as segmentation

    name = spec.split(":", 1)[1]
    if segmentation.torchvision_task(name, task) == "segmentation":
        return segmentation.open_torchvision_segmentation(spec, ignore_index)
    if task == "segmentation":
        raise DataError(f"{spec}: not a segmentation dataset (segmentation: "
                        f"{', '.join('torchvision:' + n for n in segmentation.TORCHVISION_SEGMENTATION)})")
    cls = next((getattr(tvd, n) for n in dir(tvd) if n.lower() == name.lower()), None)
    if cls is None or not inspect.isclass(cls):
        raise DataError(f"{spec}: torchvision.datasets has no dataset named {name!r}")
    root = cache_root() / "torchvision" / cls.__name__
    params = inspect.signature(cls).parameters
    datasets = {}
    for split, candidates in _TV_SPLITS.items():
        for cand in candidates:
            kwargs = {"train": split == "train"} if "train" in params else {"split": cand}
            try:
                datasets[split] = cls(root=str(root), download=True, **kwargs)
                break
            except ValueError:
                continue  # not a split name this dataset knows
            except (RuntimeError, OSError) as e:
                raise DataError(f"{spec}: cannot download or read the dataset ({type(e).__name__}: {e})") from None
    if not datasets:
        raise DataError(f"{spec}: found no train/test split")
    first = next(iter(datasets.values()))
    classes = list(getattr(first, "classes", []) or [])
    splits = {}
    for split, ds in datasets.items():
        targets = _torchvision_targets(ds)
        if not classes:
            classes = [str(c) for c in sorted(set(targets))]
        samples = [Sample(id=f"{i:08d}", label=int(t)) for i, t in enumerate(targets)]
        splits[split] = Split(split, classes, samples, _reader=lambda s, ds=ds: to_uint8_rgb(ds[int(s.id)][0]))
    return ImageSource(spec, classes, splits, root=None)


def _torchvision_targets(ds) -> list[int]:
    for attr in ("targets", "labels", "_labels", "_samples"):
        t = getattr(ds, attr, None)
        if t is not None:
            t = [x[1] if isinstance(x, tuple) else x for x in t]
            return [int(x) for x in t]
    return [int(ds[i][1]) for i in range(len(ds))]
