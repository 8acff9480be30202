"""Where modellock keeps its caches: ``$MODELLOCK_CACHE`` or ``~/.cache/modellock``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    root = os.environ.get("MODELLOCK_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "modellock"
    )
    return Path(root)


def private_dir(path: str | os.PathLike) -> Path:
    """``path`` as a folder only its owner may enter (mode 0700): created so (its parents as usual), or its
    mode narrowed when it exists. For what holds key material: checkpoints, the edit cache."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir(mode=0o700, exist_ok=True)
    if path.stat().st_mode & 0o777 != 0o700:
        os.chmod(path, 0o700)
    return path
