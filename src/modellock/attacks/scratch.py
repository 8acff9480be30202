"""Training from scratch on the thief's own images: the yardstick of every trained attack.

An attack that trains on the thief's labelled share (fine-tuning, the adapters, the re-fitted head,
distillation) is worth to the thief only what it scores *above* the same architecture trained from
random initialisation on the same images with the same budget: its ``gain`` over scratch. The scratch
model gets the budget's whole-model cells (every optimizer and learning rate of the grid, the same
samples); its best cell on the test split counts (as the attacks' own best does). It is computed once
per fraction and shared by every attack of a context (in memory, and on disk through ``ctx.memo``).
"""

from __future__ import annotations

from .context import percent
from .grid import _grid_row, _spec


def scratch_baseline(ctx, fraction: float) -> dict:
    """``{"best", "best_cell", "grid"}`` of the from-scratch model on ``ctx.attacker_split(fraction)``."""
    ident = ("scratch", float(fraction))
    if ident not in ctx._cache:
        split = ctx.attacker_split(fraction)
        ctx._cache[ident] = _grid_row(ctx, "scratch", lambda: ctx.task.model_from_spec(_spec(ctx)), split,
                                      percent(fraction), ctx.budget.grid(("whole",)), {"fraction": float(fraction)})
    return ctx._cache[ident]


def over_scratch(ctx, rows: list[dict], field: str = "score", setting=None) -> dict:
    """Add ``scratch``, ``scratch_cell`` and ``gain`` (``row[field]`` - scratch) to each row (each has a
    ``fraction``); return the summary of the row with the largest gain: ``gain``, ``gain_fraction``,
    ``gain_setting`` (``setting(row)``, default the fraction and its image count) and ``scratch``."""
    for row in rows:
        s = scratch_baseline(ctx, row["fraction"])
        row.update(scratch=s["best"], scratch_cell=s["best_cell"], gain=row[field] - s["best"])
    top = max(rows, key=lambda r: r["gain"])
    where = setting(top) if setting else f"{percent(top['fraction'])} clean ({top['n_images']} images)"
    return {"gain": top["gain"], "gain_fraction": top["fraction"], "gain_setting": where, "scratch": top["scratch"]}
