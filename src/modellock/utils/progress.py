"""Progress bars: one bar per stage, labelled for a person, with tqdm's estimate of the time left.

``stage_bar("editing 600 decoy images with 128 decoy keys", 600)``; a stage that runs in several calls
(one per decoy key, one per epoch) hands the same bar to each, so a person sees one bar per stage.
"""

from __future__ import annotations

import os

from tqdm.auto import tqdm

BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"


def stage_bar(label: str, total: int, unit: str = "img", enabled: bool = True, **options) -> tqdm:
    """A bar for one stage of ``total`` units: ``label: 42%|####  | 252/600 [00:12<00:16, loss=0.41]``.
    In a run launched with several processes only the main one (rank 0) shows it."""
    main = os.environ.get("RANK", "0") == "0"  # set by accelerate launch / torchrun
    return tqdm(total=total, desc=label, unit=unit, disable=not (enabled and main), dynamic_ncols=True,
                bar_format=BAR_FORMAT, **options)


def plural(n: int, word: str) -> str:
    """``1 image``, ``2 images``."""
    return f"{n} {word}{'' if n == 1 else 's'}"
