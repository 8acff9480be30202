"""The edit stage's hot path: data-loader workers read and hash the source images, this process edits batch
after batch, writer processes encode and write the PNGs; each batch's manifest part follows once its images are
on disk (see ``cache.py`` for the folder it fills)."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data.source import Sample, Split
from ..editors import Editor
from ..errors import DataError
from ..utils.images import save_png_atomic
from ..utils.workers import ignore_sigint, quiet_workers

MAX_READ_BATCH = 256  # images read, edited and written together when no batch size is given
# helper processes are forked where possible: they only read or write files (no CUDA), and a forked
# process needs nothing pickled (torchvision sources read through closures)
_CAN_FORK = "fork" in multiprocessing.get_all_start_methods()


def default_workers() -> int:
    """Reader processes, and as many writer processes, per editing process: the cores it has beside its own,
    half to each, at most 4 (0 on two cores: there the helpers would only take turns with the editor)."""
    cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()) or 1
    per_process = cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
    return max(0, min(4, (per_process - 1) // 2))


class _SourceReads:
    """A map-style dataset over the images to edit: ``(index, image, sha256, error)``, read in a worker."""

    def __init__(self, split: Split, samples: list[Sample]):
        self.split, self.samples = split, samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        try:
            image, digest = self.split.load_and_hash(self.samples[i])
            return i, image, digest, None
        except DataError as err:
            return i, None, None, str(err)


def _as_list(batch: list) -> list:
    return batch


def write_pngs(root: Path, names: list[str], images) -> list[str]:
    """Save each image as ``root / name`` (PNG, atomically); the files' sha256. Runs in the writer processes."""
    return [save_png_atomic(image, root / name) for name, image in zip(names, images)]


def _exit_with_parent(parent: int) -> None:
    """Writer-process start: Ctrl-C is the editing process's to handle; end when it is gone (killed), as torch's
    loader workers do."""
    ignore_sigint()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


class _Writer:
    """Drains edited batches: ``processes`` background processes encode and write the PNGs (PIL's PNG
    encoder holds the GIL, so threads would not overlap it with editing), and each batch's manifest part
    is written here once its images are on disk. At most ``2 * processes`` batches are in flight."""

    def __init__(self, folder, split: Split, processes: int):
        self.folder, self.split, self.max_pending = folder, split, 2 * processes
        context = multiprocessing.get_context("fork" if _CAN_FORK else None)
        self.pool = ProcessPoolExecutor(processes, mp_context=context, initializer=_exit_with_parent,
                                        initargs=(os.getpid(),)) if processes > 0 else None
        self.pending: deque = deque()  # (future, samples, names, hashes), oldest first

    def submit(self, samples: list[Sample], images, hashes: list[str]) -> None:
        if self.pool is None:
            self.folder.add_batch(self.split, samples, images, hashes)
            return
        names = [self.folder.name_of(self.split, s) for s in samples]
        self.pending.append((self.pool.submit(write_pngs, self.folder.root, names, images), samples, names, hashes))
        while len(self.pending) > self.max_pending or (self.pending and self.pending[0][0].done()):
            self._record_oldest()

    def _record_oldest(self) -> None:
        future, samples, names, hashes = self.pending.popleft()
        digests = future.result()  # raises the writer's error
        self.folder.add_part(self.split, samples, names, hashes, digests)

    def close(self, raise_errors: bool = True) -> None:
        """Wait for every batch handed over and record it: what was edited is kept, also when the run
        stops on an error (then ``raise_errors=False``: the first error wins)."""
        if self.pool is None:
            return
        try:
            while self.pending:
                try:
                    self._record_oldest()
                except Exception:
                    if raise_errors:
                        raise
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)


def edit_pipeline(folder, split: Split, todo: list[Sample], editor: Editor, step: int,
                   workers: int, writers: int, skip_bad: bool, mine: dict, bar: tqdm) -> None:
    """Read (worker processes) -> edit (this process) -> write (writer processes), batch by batch;
    counts go into ``mine``, progress onto ``bar``."""
    loader = DataLoader(_SourceReads(split, todo), batch_size=step, num_workers=workers, collate_fn=_as_list,
                        **quiet_workers(workers))
    batches = iter(loader)  # workers start here
    writer = _Writer(folder, split, writers)
    failed = True
    try:
        for batch in batches:
            samples, images, hashes = [], [], []
            for i, image, digest, error in batch:
                if error is None:
                    samples.append(todo[i])
                    images.append(image)
                    hashes.append(digest)
                elif skip_bad:
                    mine["skipped"].append({"source": todo[i].id, "error": error})
                else:
                    raise DataError(error)
            if samples:
                writer.submit(samples, editor.edit(images), hashes)
                mine["edited"] += len(samples)
            bar.update(len(batch))
        failed = False
    finally:
        del batches  # stops the workers
        writer.close(raise_errors=not failed)
