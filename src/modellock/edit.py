"""The edit stage: write a key-edited copy of a dataset, resumably, and serve it as the edit cache.

Layout of an edit folder::

    edit.json                       editor name and version, key fingerprint, source (never the prompt)
    <split>/<class>/<name>.png      edited images, lossless
    <split>/manifest.jsonl          one line per edited image (source id, sha256, label, file, fingerprint)
    <split>/.parts/*.jsonl          progress of an unfinished run, merged into the manifest at the end

Every image is written under a temporary name and renamed; a batch's manifest part is written after
its images. Killed at any moment and rerun, the stage re-edits only what no part lists, overwriting
any image orphaned by the kill, so it ends with exactly one file per source image.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from tqdm.auto import tqdm

from .data.sources import ImageSource, Sample, Split
from .editors import Editor, editor_class, get_editor
from .errors import DataError, WrongKeyError
from .images import load_image, save_png_atomic, write_bytes_atomic
from .paths import cache_root
from .progress import plural, stage_bar

FORMAT = "modellock-edits/1"


@dataclass
class EditReport:
    """What an edit run did for one split."""

    split: str
    total: int
    edited: int = 0
    reused: int = 0
    skipped: list[dict] = field(default_factory=list)
    folder: "EditFolder | None" = field(default=None, repr=False)  # the edit folder, opened once


class EditFolder:
    """An edit folder for one key: read what is done, add edited images, finish manifests."""

    def __init__(self, root: str | os.PathLike, key, source: ImageSource | None = None):
        self.root = Path(root)
        self.key = key
        header_path = self.root / "edit.json"
        if header_path.exists():
            try:
                header = json.loads(header_path.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise DataError(f"{header_path}: unreadable edit header ({type(e).__name__})") from None
            if not key.matches(header.get("fingerprint", "")):
                raise WrongKeyError(f"{self.root}: holds edits made with another key; use another --out")
            made_with, version = header.get("editor_version", 1), editor_class(key.editor).version
            if made_with != version:
                raise DataError(f"{self.root}: holds edits made with editor {key.editor!r} version {made_with}; "
                                f"this modellock edits with version {version}: use another folder or delete it")
            self.fingerprint = header["fingerprint"]
        else:
            self.fingerprint = key.fingerprint()
            header = {"format": FORMAT, "editor": key.editor, "editor_version": editor_class(key.editor).version,
                      "fingerprint": self.fingerprint, "source": source.spec if source else None}
            write_bytes_atomic(json.dumps(header, indent=2).encode(), header_path)
        self._done: dict[str, dict[str, dict]] = {}
        self._collisions: dict[str, set] = {}

    # ---------------------------------------------------------------- reading
    def entries(self, split: str) -> dict[str, dict]:
        """Finished entries of a split by source id (manifest plus parts of an unfinished run)."""
        if split not in self._done:
            done: dict[str, dict] = {}
            d = self.root / split
            files = [d / "manifest.jsonl"] + sorted((d / ".parts").glob("*.jsonl")) if d.exists() else []
            for f in files:
                if f.exists():
                    for line in f.read_text().splitlines():
                        if line.strip():
                            e = json.loads(line)
                            if (self.root / e["file"]).exists():
                                done[e["source"]] = e
            self._done[split] = done
        return self._done[split]

    def path_of(self, split: str, sample: Sample) -> Path | None:
        e = self.entries(split).get(sample.id)
        return self.root / e["file"] if e else None

    def load(self, split: str, sample: Sample):
        return load_image(self.path_of(split, sample))

    # ---------------------------------------------------------------- writing
    def _out_name(self, split: Split, sample: Sample) -> str:
        """``<split>/<class>/<stem>.png`` (segmentation: ``<split>/images/<path>.png``); the source suffix
        joins the stem only when stems collide."""
        if split.name not in self._collisions:
            seen: dict[tuple[int, str], int] = {}
            for s in split.samples:
                k = (s.label, Path(s.id).stem)
                seen[k] = seen.get(k, 0) + 1
            self._collisions[split.name] = {k for k, n in seen.items() if n > 1}
        rel = Path(sample.id)
        stem = rel.stem
        if (sample.label, stem) in self._collisions[split.name]:
            stem += "_" + rel.suffix.lstrip(".")
        if sample.label < 0:  # segmentation: keep the image's relative path (masks stay with the source)
            return f"{split.name}/images/{rel.with_name(stem).as_posix()}.png"
        return f"{split.name}/{split.classes[sample.label]}/{stem}.png"

    def add_batch(self, split: Split, samples: list[Sample], images, hashes: list[str]) -> None:
        """Write edited images atomically, then one manifest part naming them."""
        lines = []
        for s, img, h in zip(samples, images, hashes):
            rel = self._out_name(split, s)
            save_png_atomic(img, self.root / rel)
            entry = {"source": s.id, "source_sha256": h, "label": s.label,
                     "class": split.classes[s.label] if s.label >= 0 else None, "file": rel,
                     "fingerprint": self.fingerprint}
            lines.append(json.dumps(entry))
            self.entries(split.name)[s.id] = entry
        part = self.root / split.name / ".parts" / f"{uuid.uuid4().hex}.jsonl"
        write_bytes_atomic(("\n".join(lines) + "\n").encode(), part)

    def finish(self, split: str) -> Path:
        """Merge parts into ``manifest.jsonl`` (atomic), then drop the parts and stray temp files."""
        entries = sorted(self.entries(split).values(), key=lambda e: e["source"])
        manifest = self.root / split / "manifest.jsonl"
        write_bytes_atomic("".join(json.dumps(e) + "\n" for e in entries).encode(), manifest)
        parts = self.root / split / ".parts"
        for p in parts.glob("*"):
            p.unlink(missing_ok=True)
        if parts.exists():
            parts.rmdir()
        for tmp in (self.root / split).rglob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        return manifest


def edit_split(
    key,
    split: Split,
    out: str | os.PathLike,
    samples: Iterable[Sample] | None = None,
    editor: Editor | None = None,
    skip_bad: bool = False,
    batch_size: int | None = None,
    device: str | None = None,
    progress: "bool | tqdm" = True,
    source: ImageSource | None = None,
    desc: str | None = None,
) -> EditReport:
    """Edit ``samples`` (default: the whole split) into ``out``; finished images are not edited again.

    ``progress``: True for a bar of this call (labelled ``desc``), False for none, or a bar of the
    caller's stage that this call advances by every image it covers, edited or found done.
    """
    folder = EditFolder(out, key, source)
    todo_all = list(samples) if samples is not None else list(split.samples)
    done = folder.entries(split.name)
    report = EditReport(split.name, len(todo_all), folder=folder)
    todo = []
    for s in todo_all:
        e = done.get(s.id)
        if e is not None and (s.path is None or e["source_sha256"] == split.source_hash(s)):
            report.reused += 1
        else:
            todo.append(s)
    shared = not isinstance(progress, bool)
    if shared:
        progress.update(report.reused)
    if todo:
        editor = editor or get_editor(key, device=device, batch_size=batch_size)
        step = batch_size or editor.batch_size
        bar = progress if shared else stage_bar(
            desc or f"editing {plural(len(todo), 'image')} of split {split.name!r}", len(todo), enabled=progress)
        for start in range(0, len(todo), step):
            batch, images, hashes = [], [], []
            for s in todo[start:start + step]:
                try:
                    images.append(split.load(s))
                    hashes.append(split.source_hash(s))
                    batch.append(s)
                except DataError as err:
                    if not skip_bad:
                        raise
                    report.skipped.append({"source": s.id, "error": str(err)})
            if batch:
                folder.add_batch(split, batch, editor.edit(images), hashes)
                report.edited += len(batch)
            bar.update(len(todo[start:start + step]))
        if not shared:
            bar.close()
    folder.finish(split.name)
    return report


def edit_dataset(key, source: ImageSource, out, splits: list[str] | None = None, **options) -> list[EditReport]:
    """Edit every split (or those named) of ``source`` into ``out``; see :func:`edit_split`."""
    names = splits or list(source.splits)
    return [edit_split(key, source.split(n), out, source=source, **options) for n in names]


def cache_dir(key, source: ImageSource) -> Path:
    """The edit cache folder of (key, source): reused by every lock or eval run with that key."""
    from .editors import editor_class

    return cache_root() / "edits" / f"{key.editor}-v{editor_class(key.editor).version}" / key.cache_id / source.source_id


def write_skip_list(out: str | os.PathLike, reports: list[EditReport]) -> Path | None:
    """Record images skipped with ``--skip-bad`` in ``skipped.json``; None when there were none."""
    skipped = [dict(split=r.split, **s) for r in reports for s in r.skipped]
    if not skipped:
        return None
    path = Path(out) / "skipped.json"
    write_bytes_atomic(json.dumps(skipped, indent=2).encode(), path)
    return path
