"""Checks of a data split before any work: one clear error (or a warning) instead of minutes of compute.

``check_data(source, split, image_size, classes, training)`` is called by lock, train, eval and attack
before they edit or train anything. Errors (``DataError``) name the split, class, file or value:

- fewer than two classes, or (training) a class with no images in the split;
- a label or mask value beyond the classes list; a mask whose size differs from its image's;
- files that are not images, or truncated or corrupt ones: every image (and mask) file is decoded in full,
  in parallel threads (Pillow decodes without the GIL), and each one that fails is named; ``skip_bad``
  leaves them out instead, with a warning naming each;
- (with ``classes``) data whose classes differ from the model's;
- images smaller than ``MIN_SIDE`` pixels.

Warnings (``DataWarning``, one ``warning:`` line on the command line) are for what a user may mean:
a class with no images in another split (or, evaluating, in this one), a segmentation class with no
pixels, images smaller than the model's input (they are upscaled), links in the data folder that lead
nowhere (dangling, or a loop) and were left out.

A file that decoded once is not decoded again: its sha256 and size are kept in ``<cache>/image-checks.sqlite``
(the same bytes anywhere, under any name, are the same image), so a second check of the same data only reads
and hashes its files. ``check_train_limit`` refuses a ``--train-limit`` below the number of classes.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import sqlite3
import stat
import threading
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..errors import DataError, DataWarning
from ..utils.paths import cache_root
from .source import ImageSource, Split

MIN_SIDE = 8  # pixels: below this an "image" is an icon or a mistake, not something to learn from
NAMED = 20  # files named in one error or warning line; more are counted
CHECKS_DB = "image-checks.sqlite"
CHUNK = 64  # files read, hashed and looked up together in one thread


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
               training: bool = True, skip_bad: bool = False) -> None:
    """DataError for data no model can learn from (or be scored on); DataWarning for what may be meant.

    ``image_size`` is the model's input size; ``classes`` the model's class names (evaluation of a model);
    ``training`` makes a class without images in ``split`` an error rather than a warning. ``skip_bad`` leaves
    the images that cannot be decoded out of the split (a warning names each) instead of an error naming each.
    """
    data = source.split(split)
    where = f"{source.spec}: split {split!r}"
    if not data.samples:
        raise DataError(f"{where} has no images")
    if classes is not None and list(classes) != list(source.classes):
        raise DataError(f"{where}: its classes differ from the model's: {_class_difference(classes, source.classes)}")
    _warn_broken_links(source)
    sizes = check_decodes(source, split, skip_bad)
    data = source.split(split)
    if source.per_pixel:
        present = _check_masks(data, where)
    else:
        present = _check_labels(data, where)
    _check_classes(source, data, where, present, training)
    _check_image_sizes(data, where, sizes, image_size)


def check_train_limit(source: ImageSource, split: str, limit: int | None, option: str = "--train-limit") -> None:
    """DataError when a class-balanced subset of ``limit`` images cannot hold every class of ``split``."""
    if limit is None or source.per_pixel:
        return
    present = len({s.label for s in source.split(split).samples})
    if limit < present:
        raise DataError(f"{option} {limit}: below the {present} classes of split {split!r}; a class-balanced subset "
                        f"needs at least one image per class (use {option} {present} or more)")


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
    unit = "pixels" if source.per_pixel else "images"
    if len(present) < 2:
        found = ", ".join(repr(data.classes[i]) for i in sorted(present)) or "none"
        message = f"{where} has {unit} of {len(present)} class{'es' if len(present) != 1 else ''} only ({found})"
        if training or len(source.classes) < 2:
            raise DataError(f"{message}; a model needs at least two classes to learn from")
        warnings.warn(f"{message}: the score covers that class alone", DataWarning, stacklevel=3)
    missing = [i for i in range(len(data.classes)) if i not in present]
    if missing:
        message = f"{where} has no {unit} of class {_names([data.classes[i] for i in missing])}"
        if training and not source.per_pixel:
            elsewhere = [n for n, other in source.splits.items() if n != data.name
                         and any(s.label == missing[0] for s in other.samples)]
            found = f" (class {data.classes[missing[0]]!r} has images in split {elsewhere[0]!r})" if elsewhere else ""
            raise DataError(f"{message}{found}: the model could never learn it; add its images or remove the class")
        warnings.warn(message + ("" if training else ": not scored"), DataWarning, stacklevel=3)
    if training and not source.per_pixel:
        for name, other in source.splits.items():
            absent = sorted(set(range(len(source.classes))) - {s.label for s in other.samples})
            if name != data.name and absent:
                warnings.warn(f"{source.spec}: split {name!r} has no images of class "
                              f"{_names([source.classes[i] for i in absent])}: its score will not cover them",
                              DataWarning, stacklevel=3)


def _check_image_sizes(data: Split, where: str, sizes: dict[Path, tuple[int, int]], image_size: int | None) -> None:
    """DataError for an image smaller than MIN_SIDE; a warning when images are smaller than the model's input."""
    files = [s.path for s in data.samples if s.path is not None and s.path in sizes]
    smaller, smallest = 0, None
    for path in files:
        w, h = sizes[path]
        if min(w, h) < MIN_SIDE:
            raise DataError(f"{path}: image is {w}x{h} pixels; images must be at least {MIN_SIDE}x{MIN_SIDE}")
        if image_size and min(w, h) < image_size:
            smaller += 1
            if smallest is None or min(w, h) < min(smallest[1]):
                smallest = (path, (w, h))
    if smaller:
        path, (w, h) = smallest
        warnings.warn(f"{where}: {smaller} of {len(files)} images are smaller than the model's {image_size}x"
                      f"{image_size} input and are upscaled (smallest: {path}, {w}x{h})", DataWarning, stacklevel=3)


# ----------------------------------------------------------------------------------------- decoding every file
def check_decodes(source: ImageSource, split: str, skip_bad: bool = False) -> dict[Path, tuple[int, int]]:
    """Decode every image (and mask) file of ``split`` in full; ``{image file: (width, height)}``.

    A file that cannot be decoded is a DataError naming each such file, or with ``skip_bad`` its sample is
    left out of the split (the source is changed) with a warning naming each. Files that decoded before (by
    sha256) are only hashed.
    """
    data = source.split(split)
    files = sorted({f for s in data.samples for f in (s.path, s.mask) if f is not None})
    if not files:
        return {}
    results = _decode_files(files)
    bad = {f: r for f, r in results.items() if isinstance(r, str)}
    sizes = {f: r for f, r in results.items() if not isinstance(r, str)}
    if not bad:
        return sizes
    where = f"{source.spec}: split {split!r}"
    named = "; ".join(f"{f} ({bad[f]})" for f in list(bad)[:NAMED]) + \
        (f"; and {len(bad) - NAMED} more" if len(bad) > NAMED else "")
    if not skip_bad:
        raise DataError(f"{where}: {_count(len(bad), 'file')} cannot be decoded (truncated, corrupt or not an "
                        f"image): {named}; replace or remove them, or leave them out with --skip-bad")
    kept = [s for s in data.samples if s.path not in bad and s.mask not in bad]
    source.splits[split] = replace(data, samples=kept)
    warnings.warn(f"{where}: left out {_count(len(data.samples) - len(kept), 'image')} that cannot be decoded: "
                  f"{named}", DataWarning, stacklevel=2)
    if not kept:
        raise DataError(f"{where}: no image left that can be decoded")
    return sizes


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _decode_files(files: list[Path]) -> dict[Path, tuple[int, int] | str]:
    """``{file: (width, height)}`` for files that decode, ``{file: "why not"}`` for the others; in threads, a
    chunk of files at a time (one cache query per chunk)."""
    db = _ChecksCache()
    workers = min(8, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()) or 1)
    chunks = [files[i:i + CHUNK] for i in range(0, len(files), CHUNK)]
    results: dict = {}
    with ThreadPoolExecutor(max(1, min(workers, len(chunks)))) as pool, \
            tqdm(total=len(files), desc=f"checking {_count(len(files), 'image file')}", unit="file", delay=2.0,
                 leave=False) as bar:
        for chunk, found in zip(chunks, pool.map(lambda c: _decode_chunk(c, db), chunks)):
            results.update(zip(chunk, found))
            bar.update(len(chunk))
    db.save()
    return results


def _decode_chunk(files: list[Path], db: "_ChecksCache") -> list[tuple[int, int] | str]:
    """Read and hash each file; decode those whose hash the cache does not know."""
    read = []
    for path in files:
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            read.append((None, f"cannot read it: {e.strerror or e}"))
            continue
        read.append((data, hashlib.sha256(data).hexdigest()))
    known = db.get_many([digest for data, digest in read if data is not None])
    found = []
    for data, digest in read:
        if data is None:
            found.append(digest)  # why it could not be read
        elif digest in known:
            found.append(known[digest])
        else:
            found.append(_decode_new(data, digest, db))
    return found


def _decode_new(data: bytes, digest: str, db: "_ChecksCache") -> tuple[int, int] | str:
    try:
        size = _decode(data)
    except Image.UnidentifiedImageError:
        return "not an image"
    except Exception as e:  # noqa: BLE001 - Pillow's decoders raise many types on corrupt data
        return f"{type(e).__name__}: {str(e)[:120]}"
    db.add(digest, size)
    return size


def _decode(data: bytes) -> tuple[int, int]:
    """Decode an image file's bytes in full (every pixel: a truncated JPEG fails here, not mid-training); its
    (width, height). Raises what Pillow raises."""
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.size


class _ChecksCache:
    """sha256 -> (width, height) of the files that decoded, in ``<cache>/image-checks.sqlite`` (one connection per
    thread; new entries are written once, at the end). A cache that cannot be opened is simply not used."""

    def __init__(self):
        self.path = cache_root() / CHECKS_DB
        self.local = threading.local()
        self.new: dict[str, tuple[int, int]] = {}
        self.lock = threading.Lock()

    def _connection(self):
        if not hasattr(self.local, "db"):
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=30)
                db.execute("CREATE TABLE IF NOT EXISTS decoded (sha256 TEXT PRIMARY KEY, width INT, height INT)")
            except (OSError, sqlite3.Error):
                db = None
            self.local.db = db
        return self.local.db

    def get_many(self, digests: list[str]) -> dict[str, tuple[int, int]]:
        db = self._connection()
        if db is None or not digests:
            return {}
        try:
            rows = db.execute(f"SELECT sha256, width, height FROM decoded WHERE sha256 IN "
                              f"({', '.join('?' * len(digests))})", digests).fetchall()
        except sqlite3.Error:
            return {}
        return {d: (int(w), int(h)) for d, w, h in rows}

    def add(self, digest: str, size: tuple[int, int]) -> None:
        with self.lock:
            self.new[digest] = size

    def save(self) -> None:
        db = self._connection()
        if db is None or not self.new:
            return
        try:
            with db:
                db.executemany("INSERT OR REPLACE INTO decoded VALUES (?, ?, ?)",
                               [(d, w, h) for d, (w, h) in self.new.items()])
        except sqlite3.Error:
            pass  # a cache that cannot be written costs a decode next time, nothing else


# ----------------------------------------------------------------------------------- links that lead nowhere
def _warn_broken_links(source: ImageSource) -> None:
    """A warning naming the links in a data folder that lead nowhere (dangling, or a loop): they are left out."""
    if source.root is None:
        return
    broken = broken_links(source.root)
    if broken:
        named = ", ".join(f"{p.relative_to(source.root)} ({why})" for p, why in broken[:NAMED]) + \
            (f" and {len(broken) - NAMED} more" if len(broken) > NAMED else "")
        warnings.warn(f"{source.spec}: {_count(len(broken), 'link')} in the data lead nowhere and are left out: "
                      f"{named}", DataWarning, stacklevel=3)


def broken_links(root: Path) -> list[tuple[Path, str]]:
    """``(link, why)`` for every symbolic link under ``root`` (hidden entries aside, as the sources skip them)
    whose target does not exist ("dangling"), is a loop of links ("a loop of links"), or is a folder that
    holds the link ("a loop: leads back to <folder>")."""
    found, seen, stack = [], set(), [Path(root)]
    while stack:
        folder = stack.pop()
        try:
            st = folder.stat()
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        for e in entries:
            if e.name.startswith("."):
                continue
            path = Path(e.path)
            if e.is_symlink():
                try:
                    target = os.stat(e.path)
                except OSError as err:
                    found.append((path, "a loop of links" if err.errno == errno.ELOOP else "dangling"))
                    continue
                if stat.S_ISDIR(target.st_mode):
                    real, here = os.path.realpath(e.path), os.path.realpath(folder)
                    if here == real or here.startswith(real.rstrip(os.sep) + os.sep):
                        found.append((path, f"a loop: leads back to {os.path.relpath(real, os.path.realpath(root))}"))
                    else:
                        stack.append(path)
            elif e.is_dir(follow_symlinks=False):
                stack.append(path)
    return sorted(found)
