"""Attack registry: ways to use a locked model without its key, each one function in its own module.

An attack is a function ``fn(ctx, **options) -> dict`` decorated with ``@register_attack(name)``; it
gets an :class:`~modellock.attacks.context.AttackContext` (the locked model, the data, the task's
metric, the attacker's settings) and returns a JSON-able dict with at least ``best``: the highest
score it reaches on the test split. Adding an attack touches one module plus one line in
``_MODULES`` below; nothing else dispatches on names.

Each attack declares whether it trains on the thief's labelled data (``trained=True``: fine-tuning, the
adapters, the re-fitted head, distillation) and so what its score measures (``measure``): a trained attack
measures its ``gain`` over training from scratch on the same images with the same budget and grid (what
the stolen weights are worth to the thief, ``modellock.attacks.scratch``); an attack that trains nothing
measures the share of the lock it ``undone``s, or its ``tolerance`` (near misses of the true key, which a
thief without the key cannot make: they tell how exact the key must be, and are not counted as attacks in
the summary).

The true key is never in the context. An attack that must read it *on purpose* (near misses of the
true prompt, the true prompt with the wrong machinery) declares a parameter named ``key``:
``fn(ctx, key, **options)``; :func:`run_attack` hands the key to those functions and to no other.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Callable

from ..errors import ModelLockError

# The attack modules, in the order a report lists them; imported on first use of the registry so that
# ``modellock --help`` stays light (they import torch).
_MODULES = (
    "ignore_locked_class",
    "guessed_prompts",
    "similar_prompts",
    "wrong_machinery",
    "fine_tune",
    "distillation",
    "input_adapter",
    "generic_transforms",
)
MEASURES = ("undone", "gain", "tolerance")

_REGISTRY: dict[str, "AttackSpec"] = {}


@dataclass(frozen=True)
class AttackSpec:
    """A registered attack: its function, whether it reads the true key, a one-line summary, what it measures,
    and whether it trains on the thief's labelled data (then it measures its gain over scratch)."""

    name: str
    fn: Callable[..., dict]
    reads_key: bool
    summary: str
    measure: str = "undone"
    trained: bool = False


def register_attack(name: str, measure: str | None = None, trained: bool = False):
    """Decorator adding ``fn(ctx, **options)`` (or ``fn(ctx, key, **options)``) under ``name``; ``trained``
    attacks measure ``gain`` (over scratch), the others ``undone`` (default) or ``tolerance``."""
    measure = measure or ("gain" if trained else "undone")
    if measure not in MEASURES:
        raise ValueError(f"attack {name!r}: measure must be one of {', '.join(MEASURES)}, not {measure!r}")
    if trained != (measure == "gain"):
        raise ValueError(f"attack {name!r}: an attack measures its gain over scratch exactly when it is trained")

    def wrap(fn):
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise ValueError(f"attack {name!r} is already registered")
        params = list(inspect.signature(fn).parameters)
        if not params or params[0] != "ctx":
            raise TypeError(f"attack {name!r}: the first parameter must be 'ctx'")
        reads_key = "key" in params
        if reads_key and params[1] != "key":
            raise TypeError(f"attack {name!r}: 'key' must come right after 'ctx'")
        summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        _REGISTRY[name] = AttackSpec(name, fn, reads_key, summary, measure, trained)
        fn.attack_name = name
        return fn

    return wrap


def _load() -> None:
    for module in _MODULES:
        importlib.import_module(f"{__name__}.{module}")


def available_attacks() -> list[str]:
    """Registered attack names in report order (``_MODULES`` order, then any registered elsewhere)."""
    _load()
    rank = {f"{__name__}.{m}": i for i, m in enumerate(_MODULES)}
    names = list(_REGISTRY)
    return sorted(names, key=lambda n: (rank.get(_REGISTRY[n].fn.__module__, len(rank)), names.index(n)))


def attack_spec(name: str) -> AttackSpec:
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ModelLockError(f"unknown attack {name!r} (known: {', '.join(available_attacks())}, or all)") from None


def run_attack(name: str, ctx, key=None, **options) -> dict:
    """Run attack ``name``; ``key`` reaches it only when its function declares a ``key`` parameter."""
    spec = attack_spec(name)
    if spec.reads_key:
        if key is None:
            raise ModelLockError(f"attack {name!r} measures near misses of the true key; it needs --key")
        return spec.fn(ctx, key, **options)
    return spec.fn(ctx, **options)


__all__ = ["AttackSpec", "register_attack", "available_attacks", "attack_spec", "run_attack"]
