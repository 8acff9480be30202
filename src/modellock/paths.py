"""Where modellock keeps its caches: ``$MODELLOCK_CACHE`` or ``~/.cache/modellock``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    root = os.environ.get("MODELLOCK_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "modellock"
    )
    return Path(root)
