"""The edit stage: write a key-edited copy of a dataset, resumably, and serve it as the edit cache.

Layout of an edit folder::

    edit.json                       editor name and version, key fingerprint, source (never the prompt)
    <split>/<class>/<name>.png      edited images, lossless
    <split>/manifest.jsonl          one line per edited image (source id and sha256, label, file, the
                                    file's sha256, fingerprint)
    <split>/.parts/*.jsonl          progress of an unfinished run, merged into the manifest at the end

Every image is written under a temporary name and renamed; a batch's manifest part is written after
its images. Killed at any moment and rerun, the stage re-edits only what no part lists, overwriting
any image orphaned by the kill, so it ends with exactly one file per source image. A write that fails
(a full disk) removes its temporary file and stops with one error; what the manifest lists stays intact.
Every edited image is checked against the sha256 its manifest entry records: a rerun edits an image
whose file was changed or damaged again, and reading one raises DataError.

The hot path overlaps three things: data-loader worker processes read and hash the source images,
the main process edits batch after batch, and writer processes encode and write the PNGs (each
batch's manifest part follows once its images are on disk). Launched with several processes (``accelerate launch`` / ``torchrun``), every process edits its
own block of the images not yet done and writes its own parts; the main process merges them into the
manifest and records in ``edit.json`` how many images each process edited. The result is the same
folder, byte for byte, as one process makes.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, NamedTuple

from tqdm.auto import tqdm

from ..data.source import ImageSource, Sample, Split
from ..editors import Editor, editor_class, get_editor
from ..errors import DataError, WrongKeyError
from ..utils import distributed
from ..utils.atomic import write_bytes_atomic
from ..utils.images import decode_image
from ..utils.paths import cache_root, private_dir
from ..utils.progress import plural, stage_bar
from .pipeline import MAX_READ_BATCH, default_workers, edit_pipeline, write_pngs  # noqa: F401

FORMAT = "modellock-edits/1"


class Done(NamedTuple):
    """A finished image in an edit folder: its file (relative to the folder), its source's sha256, and the
    sha256 of the file (None in folders written before it was recorded)."""

    file: str
    source_sha256: str
    sha256: str | None = None


@dataclass
class EditReport:
    """What an edit run did for one split."""

    split: str
    total: int
    edited: int = 0
    reused: int = 0
    repaired: int = 0  # images listed as done whose file no longer matched its sha256: edited again
    skipped: list[dict] = field(default_factory=list)
    folder: "EditFolder | None" = field(default=None, repr=False)  # the edit folder, opened once
    # per process of the run: {"rank", "edited", "reused", "skipped"} (one entry in a one-process run)
    processes: list[dict] = field(default_factory=list)


class EditFolder:
    """An edit folder for one key: read what is done, add edited images, finish manifests."""

    def __init__(self, root: str | os.PathLike, key, source: ImageSource | None = None):
        """Open ``root`` for ``key``, creating its header if new; every process of a launched run calls this."""
        self.root = Path(root)
        self.key = key
        self.header_path = self.root / "edit.json"
        if distributed.is_main():  # the edits test prompt guesses for the CPU editors: the owner's only (0700)
            edits = cache_root() / "edits"
            if edits.resolve() in self.root.resolve().parents:
                private_dir(edits)
            private_dir(self.root)
        if distributed.is_main() and not self.header_path.exists():  # one fingerprint (salted) for all processes
            header = {"format": FORMAT, "editor": key.editor, "editor_version": editor_class(key.editor).version,
                      "fingerprint": key.fingerprint(), "source": source.spec if source else None}
            write_bytes_atomic(json.dumps(header, indent=2).encode(), self.header_path)
        distributed.barrier()
        header = self.header()
        if not key.matches(header.get("fingerprint", "")):
            raise WrongKeyError(f"{self.root}: holds edits made with another key; use another --out")
        made_with, version = header.get("editor_version", 1), editor_class(key.editor).version
        if made_with != version:
            raise DataError(f"{self.root}: holds edits made with editor {key.editor!r} version {made_with}; "
                            f"this modellock edits with version {version}: use another folder or delete it")
        self.fingerprint = header["fingerprint"]
        self._done: dict[str, dict[str, Done]] = {}
        self._collisions: dict[str, set] = {}

    def header(self) -> dict:
        """``edit.json``: editor, fingerprint, source, and per split the processes of its last run."""
        try:
            header = json.loads(self.header_path.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{self.header_path}: unreadable edit header ({type(e).__name__})") from None
        if not isinstance(header, dict) or not isinstance(header.get("fingerprint"), str):
            raise DataError(f"{self.header_path}: malformed edit header (no fingerprint)")
        return header

    # ---------------------------------------------------------------- reading
    def entries(self, split: str) -> dict[str, Done]:
        """Finished images of a split by source id (manifest plus parts of an unfinished run), kept small:
        the index of an ImageNet-sized cache lives in every process."""
        if split not in self._done:
            self._done[split] = {e["source"]: Done(e["file"], e.get("source_sha256"), e.get("sha256"))
                                 for e, _ in self._listed(split)}
        return self._done[split]

    def _listed(self, split: str):
        """``(entry, line)`` of the manifest, then of the parts, whose image file exists (a later line for a
        source wins)."""
        d = self.root / split
        files = [d / "manifest.jsonl"] + sorted((d / ".parts").glob("*.jsonl")) if d.exists() else []
        for f in files:
            if f.exists():
                with open(f, encoding="utf-8", errors="replace") as lines:
                    for number, line in enumerate(lines, 1):
                        line = line.rstrip("\n")
                        if line.strip():
                            e = _manifest_entry(line, f"{f}, line {number}")
                            if (self.root / e["file"]).exists():
                                yield e, line

    def reload(self, split: str) -> None:
        """Forget what was read of ``split``: the next use reads the manifest and parts again."""
        self._done.pop(split, None)

    def path_of(self, split: str, sample: Sample) -> Path | None:
        e = self.entries(split).get(sample.id)
        return self.root / e.file if e else None

    def intact(self, done: Done) -> bool:
        """True when the file of ``done`` still has the sha256 recorded for it (or none was recorded)."""
        if done.sha256 is None:
            return True
        try:
            return hashlib.sha256((self.root / done.file).read_bytes()).hexdigest() == done.sha256
        except OSError:
            return False

    def load(self, split: str, sample: Sample):
        """The edited image of ``sample``; DataError when its file does not match the manifest's sha256."""
        done = self.entries(split).get(sample.id)
        if done is None:
            raise DataError(f"{self.root}: no edited image of {split}/{sample.id}; run `modellock edit` first")
        path = self.root / done.file
        data = path.read_bytes()
        if done.sha256 is not None and hashlib.sha256(data).hexdigest() != done.sha256:
            raise DataError(f"{path}: does not match the sha256 its manifest records (changed or damaged); "
                            "rerun the edit or lock command to edit it again")
        return decode_image(data, name=str(path))

    # ---------------------------------------------------------------- writing
    def name_of(self, split: Split, sample: Sample) -> str:
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
        names = [self.name_of(split, s) for s in samples]
        digests = write_pngs(self.root, names, images)
        self.add_part(split, samples, names, hashes, digests)

    def add_part(self, split: Split, samples: list[Sample], names: list[str], hashes: list[str],
                 digests: list[str]) -> None:
        """Record images already written under ``names`` (the files' sha256 ``digests``): one manifest part
        of this process."""
        lines = []
        for s, rel, h, d in zip(samples, names, hashes, digests):
            entry = {"source": s.id, "source_sha256": h, "label": s.label,
                     "class": split.classes[s.label] if s.label >= 0 else None, "file": rel, "sha256": d,
                     "fingerprint": self.fingerprint}
            lines.append(json.dumps(entry))
            self.entries(split.name)[s.id] = Done(rel, h, d)
        part = self.root / split.name / ".parts" / f"rank{distributed.rank()}-{uuid.uuid4().hex}.jsonl"
        write_bytes_atomic(("\n".join(lines) + "\n").encode(), part)

    def finish(self, split: str, processes: list[dict] | None = None) -> Path:
        """Merge the parts of every process into ``manifest.jsonl`` (atomic), drop the parts and stray temp
        files, and record ``processes`` (what each process of the run did) in ``edit.json``. Main process only."""
        self.reload(split)  # read back from disk: the parts of the other processes too
        lines = {e["source"]: line for e, line in self._listed(split)}  # the lines as written: no re-encoding
        manifest = self.root / split / "manifest.jsonl"
        write_bytes_atomic("".join(lines[source] + "\n" for source in sorted(lines)).encode(), manifest)
        parts = self.root / split / ".parts"
        for p in parts.glob("*"):
            p.unlink(missing_ok=True)
        if parts.exists():
            parts.rmdir()
        for tmp in (self.root / split).rglob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        if processes is not None:
            self._record_run(split, len(lines), processes)
        return manifest

    def _record_run(self, split: str, images: int, processes: list[dict]) -> None:
        """``edit.json``: ``splits.<split>`` = images in the manifest and the processes of this run;
        ``processes`` = images each rank edited, summed over the last run of every split."""
        header = self.header()
        header.setdefault("splits", {})[split] = {"images": images, "num_processes": len(processes),
                                                  "processes": processes}
        totals: dict[int, int] = {}
        for record in header["splits"].values():
            for p in record["processes"]:
                totals[p["rank"]] = totals.get(p["rank"], 0) + p["edited"]
        header["num_processes"] = len(processes)
        header["processes"] = [{"rank": r, "edited": n} for r, n in sorted(totals.items())]
        write_bytes_atomic(json.dumps(header, indent=2).encode(), self.header_path)


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
    num_workers: int | None = None,
    writers: int | None = None,
) -> EditReport:
    """Edit ``samples`` (default: the whole split) into ``out``; finished images are not edited again.

    ``progress``: True for a bar of this call (labelled ``desc``), False for none, or a bar of the
    caller's stage that this call advances by every image it covers, edited or found done.
    ``num_workers`` data-loader processes read the sources and ``writers`` processes write the PNGs (each
    default: see ``default_workers``; 0 does that work in this process). Launched with several processes,
    each edits its own block of the images not yet done (only the main process shows progress); every
    process returns the totals of the run (``processes`` has each one's share).
    """
    device = device or distributed.device()
    folder = EditFolder(out, key, source)
    wanted = list(samples) if samples is not None else list(split.samples)
    done = folder.entries(split.name)
    distributed.barrier()  # every process has read the same progress before any of them writes
    pending = distributed.shard([s for s in wanted if s.id not in done])
    listed = distributed.shard([s for s in wanted if s.id in done])
    # an image listed as done is edited again when its source changed since, or its file was damaged
    changed = [s for s in listed if s.path is not None and done[s.id].source_sha256 != split.source_hash(s)]
    changed_ids = {s.id for s in changed}
    damaged = [s for s in listed if s.id not in changed_ids and not folder.intact(done[s.id])]
    todo = pending + changed + damaged
    mine = {"rank": distributed.rank(), "edited": 0, "reused": len(listed) - len(changed) - len(damaged),
            "repaired": len(damaged), "skipped": []}
    shared = not isinstance(progress, bool)
    if shared:
        progress.update(mine["reused"])
    if todo:
        editor = editor or get_editor(key, device=device, batch_size=batch_size)
        step = batch_size or min(editor.batch_size, MAX_READ_BATCH)
        workers = default_workers() if num_workers is None else num_workers
        writers = default_workers() if writers is None else writers
        if len(todo) < 2 * step:  # one batch: nothing to overlap, and no process start-up to pay
            workers = writers = 0
        bar = progress if shared else stage_bar(
            desc or f"editing {plural(len(todo), 'image')} of split {split.name!r}", len(todo),
            enabled=progress and distributed.is_main())
        try:
            with _write_errors(folder.root):
                edit_pipeline(folder, split, todo, editor, step, workers, writers, skip_bad, mine, bar)
        finally:
            if not shared:
                bar.close()  # before an error too: the error line then starts a line of its own
    everyone = distributed.gather(mine)
    if shared:  # the other processes' shares, on the main process's bar
        progress.update(sum(p["edited"] + p["reused"] + len(p["skipped"]) for p in everyone
                            if p["rank"] != mine["rank"]))
    if distributed.is_main():
        with _write_errors(folder.root):
            folder.finish(split.name, [{k: p[k] for k in ("rank", "edited", "reused")} for p in everyone])
    distributed.barrier()
    folder.reload(split.name)
    folder.entries(split.name)  # the merged manifest, read now so that forked data-loader workers share it
    return EditReport(split.name, len(wanted), edited=sum(p["edited"] for p in everyone),
                      reused=sum(p["reused"] for p in everyone), repaired=sum(p["repaired"] for p in everyone),
                      skipped=[s for p in everyone for s in p["skipped"]], folder=folder,
                      processes=[{"rank": p["rank"], "edited": p["edited"], "reused": p["reused"],
                                  "skipped": len(p["skipped"])} for p in everyone])


def _manifest_entry(line: str, where: str) -> dict:
    """One manifest line, checked: DataError for a malformed line or a file outside the edit folder."""
    try:
        e = json.loads(line)
        source, file = e["source"], e["file"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise DataError(f"{where}: malformed manifest entry ({type(err).__name__}); delete the edit folder "
                        "to edit again") from None
    rel = Path(file) if isinstance(file, str) else None
    if not isinstance(source, str) or rel is None or rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise DataError(f"{where}: manifest entry names a file outside the edit folder ({file!r})")
    return e


@contextlib.contextmanager
def _write_errors(root: Path):
    """OSError while writing edits (a full disk, no permission) -> one DataError; finished work stays listed."""
    try:
        yield
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DataError(f"{root}: no space left on the device; the images written so far are kept: "
                            "free some space and rerun to resume") from None
        raise DataError(f"{root}: cannot write edited images ({err.strerror or err})") from None


def edit_dataset(key, source: ImageSource, out, splits: list[str] | None = None, **options) -> list[EditReport]:
    """Edit every split (or those named) of ``source`` into ``out``; see :func:`edit_split`."""
    names = splits or list(source.splits)
    return [edit_split(key, source.split(n), out, source=source, **options) for n in names]


def cache_dir(key, source: ImageSource) -> Path:
    """The edit cache folder of (key, source): reused by every lock or eval run with that key."""
    return cache_root() / "edits" / f"{key.editor}-v{editor_class(key.editor).version}" / key.cache_id / source.source_id


def write_skip_list(out: str | os.PathLike, reports: list[EditReport]) -> Path | None:
    """Record images skipped with ``--skip-bad`` in ``skipped.json``; None when there were none."""
    skipped = [dict(split=r.split, **s) for r in reports for s in r.skipped]
    if not skipped:
        return None
    path = Path(out) / "skipped.json"
    write_bytes_atomic(json.dumps(skipped, indent=2).encode(), path)
    return path
