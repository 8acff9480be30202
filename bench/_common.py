"""The tail every bench script shares: the machine in one line, the best wall time of a few runs, and the result
written as JSON (``--json PATH``) beside the printed table."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Callable


def machine_description(device: str = "cpu") -> str:
    """``AMD EPYC ..., 2 CPU cores, torch threads 1 (no GPU used)``, or the GPU's name."""
    import torch  # lazy: the bench scripts that time no torch code stay quick to start

    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(torch.device(device))} (GPU)"
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()} (no GPU used)"


def best_seconds(fn: Callable[[], object], repeats: int) -> float:
    """The best wall time of ``repeats`` calls of ``fn`` (after any warm-up the caller did)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def write_result(path: str | os.PathLike | None, result: dict) -> None:
    """Write ``result`` as indented JSON to ``path`` (its folder made); nothing when ``path`` is None."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(result, indent=2) + "\n")
