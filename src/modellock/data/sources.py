"""Image sources for classification and segmentation: folders, .tar.gz archives, torchvision datasets.

``open_source(spec)`` accepts
- a folder with one subfolder per split (``train/``, ``test/``), each ``<class>/<image>``;
  a folder whose only child is such a folder (an archive's root) is entered;
  a plain ``<class>/<image>`` folder is one split named ``all``;
- a segmentation folder: ``<split>/images/<image>`` + ``<split>/masks/<image stem>.png``
  (see ``modellock/data/mask_folders.py``), detected by its ``images/`` and ``masks/`` folders;
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
from pathlib import Path

import torchvision.datasets as tvd

from ..errors import DataError
from ..utils.images import to_uint8_rgb
from ..utils.paths import cache_root
from . import mask_folders
from .source import (LABEL_TASK, MASK_TASK, SPLIT_NAMES, TASKS, ImageSource, Sample, Split, image_files,
                     is_image_folder, visible_dirs)


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


def _is_archive(path: Path) -> bool:
    return path.name.endswith((".tar.gz", ".tgz", ".tar"))


def _open_folder(spec: str, path: Path, task: str | None, ignore_index: int) -> ImageSource:
    root = path
    while True:  # enter an archive's single root folder, e.g. cifar10/
        dirs = visible_dirs(root)
        if len(dirs) == 1 and not image_files(root) and not is_image_folder(root) \
                and dirs[0].name not in SPLIT_NAMES and not mask_folders.is_segmentation_folder(dirs[0]):
            root = dirs[0]
        else:
            break
    if mask_folders.is_segmentation_layout(root):
        if task == LABEL_TASK:
            raise DataError(f"{spec}: this is a segmentation layout (images/ + masks/ folders); classification "
                            "expects an ImageFolder layout (<split>/<class>/<image>)")
        return mask_folders.open_segmentation_folder(spec, root, ignore_index)
    if task == MASK_TASK:
        raise DataError(f"{spec}: expected a segmentation layout ([<split>/]images/<image> with "
                        "[<split>/]masks/<image stem>.png); found no images/ and masks/ folders")
    split_dirs = [d for d in visible_dirs(root) if is_image_folder(d)]
    if split_dirs:
        named = {d.name: d for d in split_dirs}
    elif is_image_folder(root):
        named = {"all": root}
    else:
        raise DataError(f"{spec}: no images found in the ImageFolder layout (<split>/<class>/<image>)")
    classes = sorted({c.name for d in named.values() for c in visible_dirs(d) if image_files(c)})
    index = {c: i for i, c in enumerate(classes)}
    splits = {}
    for name, d in named.items():
        samples = [
            Sample(id=f"{c.name}/{f.name}", label=index[c.name], path=f)
            for c in visible_dirs(d) if c.name in index for f in image_files(c)
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
    name = spec.split(":", 1)[1]
    if mask_folders.torchvision_task(name, task) == MASK_TASK:
        return mask_folders.open_torchvision_segmentation(spec, ignore_index)
    if task == MASK_TASK:
        raise DataError(f"{spec}: not a segmentation dataset (segmentation: "
                        f"{', '.join('torchvision:' + n for n in mask_folders.TORCHVISION_SEGMENTATION)})")
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
