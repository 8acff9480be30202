"""Results as JSON: every figure rounded to ``DIGITS`` decimals where a result is written (files, stdout).

Scores come out of float32 tensors (``0.9900000095367432``); four decimals keep what the measurements
can tell apart (one image in 10,000) and nothing of the float noise.
"""

from __future__ import annotations

import json
import math
import os

from .atomic import write_bytes_atomic

DIGITS = 4


def rounded(obj, digits: int = DIGITS):
    """``obj`` with every float (numpy and torch scalars included) rounded to ``digits`` decimals; NaN and
    infinities become None (JSON has neither)."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [rounded(v, digits) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalar
        return rounded(obj.item(), digits)
    if isinstance(obj, float):
        return round(obj, digits) if math.isfinite(obj) else None
    return obj


def dumps(obj, indent: int | None = None) -> str:
    """The JSON text of ``obj`` with rounded figures."""
    return json.dumps(rounded(obj), indent=indent)


def write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON with rounded figures, atomically."""
    write_bytes_atomic((dumps(obj, indent=2) + "\n").encode(), path)
