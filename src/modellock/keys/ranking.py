"""Rank candidate key prompts by how well their edits separate on the user's own images.

The paper designs key prompts (with GPT-4V) whose edits change the image enough to tell from the original
while keeping what it shows. ``rank_prompts`` measures both on a class-balanced sample of the user's images,
with the key's editor and settings, and no model training:

- ``from_clean``: mean absolute pixel difference (0-255) between each edited image and its original;
- ``from_others``: the same against the closest edit among ``others`` random other prompts (a guessing
  thief's neighbourhood): a key whose edit lands near other prompts' edits is easier to stand in for;
- ``structure``: the correlation of image gradients (edge maps) between edit and original: the content the
  unlocked model must still see;
- ``score``: ``min(from_clean, from_others) * structure``; candidates are returned best first.
"""

from __future__ import annotations

import numpy as np

from ..editors import get_editor


def _gradients(images: list[np.ndarray]) -> np.ndarray:
    out = []
    for a in images:
        g = a.astype(np.float32).mean(2)
        gy, gx = np.gradient(g)
        out.append(np.hypot(gx, gy).ravel())
    return np.concatenate(out)


def _distance(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(np.mean([np.abs(x.astype(np.float32) - y.astype(np.float32)).mean() for x, y in zip(a, b)]))


def rank_prompts(key, prompts: list[str], images: list[np.ndarray], others: list[str], device=None) -> list[dict]:
    """Each candidate prompt's figures (see the module docstring), best first. ``key`` gives the editor and
    settings; its own prompt is not used."""
    clean_g = _gradients(images)
    other_edits = [get_editor(key.replace(prompt=p), device=device).edit(images) for p in others]
    rows = []
    for i, prompt in enumerate(prompts):
        edits = get_editor(key.replace(prompt=prompt), device=device).edit(images)
        from_clean = _distance(edits, images)
        from_others = min((_distance(edits, o) for o in other_edits), default=float("inf"))
        structure = float(np.corrcoef(clean_g, _gradients(edits))[0, 1])
        score = min(from_clean, from_others) * max(structure, 0.0)
        rows.append({"candidate": i, "prompt": prompt, "from_clean": from_clean, "from_others": from_others,
                     "structure": structure, "score": score})
    return sorted(rows, key=lambda r: -r["score"])
