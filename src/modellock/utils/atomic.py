"""Atomic file writes: a reader never sees half a file, a failed write leaves nothing behind."""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from pathlib import Path


def write_bytes_atomic(data: bytes, path: str | os.PathLike, mode: int = 0o666, fsync: bool = True) -> None:
    """Write bytes to a new temporary file beside ``path``, fsync, then rename: readers never see half a file.

    The temporary file comes from ``tempfile.mkstemp``: a random name, opened with ``O_EXCL | O_NOFOLLOW`` and
    mode 0600, so a file or symlink planted at a guessable name is never written through. ``mode`` (less the
    umask) is set before any byte is written when it is wider, e.g. keep 0o600 for a secret."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    with _removed_on_error(tmp), os.fdopen(fd, "wb") as f:
        if mode & ~0o600 & ~_umask():
            os.fchmod(fd, mode & ~_umask())
        f.write(data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    """The process's umask (read once: from /proc where Linux shows it, else set and restored)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def _removed_on_error(tmp: Path):
    """Delete a half-written temporary file when writing it fails (a full disk, an interrupt)."""
    try:
        yield
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
