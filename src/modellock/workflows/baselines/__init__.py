"""Lock baselines: the locks ``modellock compare`` trains side by side, one file each, found by the one
``Registry``. A baseline is a :class:`LockBaseline` registered with ``BASELINES.register``-style ``add``:
its name, aliases, and ``setup(seed, block_size, modellock_editor, diffusion_model, seal)`` giving
``(editor, key fields, recipe)`` (the prompt is drawn by ``compare.make_key``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ...errors import ModelLockError
from ...utils.registry import Registry


@dataclass(frozen=True)
class LockBaseline:
    """A lock ``compare`` can train: ``setup(...) -> (editor, key fields, LockRecipe)``; ``order`` places it in
    the default list and the table."""

    name: str
    setup: Callable
    aliases: tuple[str, ...] = ()
    order: int = 100
    label: str = ""  # how the list of known locks names it (default: the name)


def _unknown(name) -> str:
    return f"compare: unknown lock {name!r} (known: {known_text()})"


BASELINES = Registry("lock", package=__name__, group="baselines", order=lambda b: b.order)


def register_baseline(baseline: LockBaseline) -> LockBaseline:
    return BASELINES.add(baseline.name, baseline, same=lambda b: b.name)


def known_text() -> str:
    """``modellock, pixel-shuffle, negative-positive (np), ffx``: the names, aliases in brackets."""
    return ", ".join(b.label or b.name for _, b in BASELINES.items())


def canonical(name: str) -> str:
    """The registered name of ``name`` (an alias or any case); ModelLockError naming the known locks."""
    name = name.lower()
    for registered, baseline in BASELINES.items():
        if name == registered or name in baseline.aliases:
            return registered
    raise ModelLockError(_unknown(name))


__all__ = ["LockBaseline", "BASELINES", "register_baseline", "canonical", "known_text"]
