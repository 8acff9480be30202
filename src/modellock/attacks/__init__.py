"""Attack registry: ways to use a locked model without its key, each one function in its own module.

An attack is a function ``fn(ctx, **options) -> dict`` decorated with ``@register_attack(name)``; it
gets an :class:`~modellock.attacks.context.AttackContext` (the locked model, the data, the task's
metric, the attacker's settings) and returns a JSON-able dict with at least ``best``: the highest
score it reaches on the test split. Adding an attack is adding one module to this folder (found by the one
``Registry``; ``REPORT_ORDER`` below only places the built-in ones in a report); what a report or the summary does
with an attack's result is an attribute of its spec (``summary_fields``, ``chart_style``, ``guesses_prompts``),
so nothing else dispatches on names.

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

import inspect
from dataclasses import dataclass, field
from typing import Callable

from ..errors import ModelLockError
from ..utils.registry import Registry

# The built-in attack modules in the order a report lists them (an attack in any other module comes after them).
REPORT_ORDER = (
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
# the modules of this folder that hold no attack
HELPERS = ("context", "grid", "suite", "report", "scratch", "prompt_catalogue")


def _report_rank(spec: "AttackSpec") -> tuple[int, int]:
    rank = {f"{__name__}.{m}": i for i, m in enumerate(REPORT_ORDER)}
    return rank.get(spec.fn.__module__, len(rank)), spec.index


# imported on first use, so that ``modellock --help`` stays light (the attack modules import torch)
ATTACKS = Registry("attack", package=__name__, helpers=HELPERS, group="attacks", order=_report_rank,
                   known_suffix=", or all")


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
    # result field -> summary field the suite's summary copies (when the result's ``gain`` is set)
    summary_fields: dict = field(default_factory=dict)
    chart_style: str = ":"  # the line style of its curve in the attack report's chart of trained attacks
    guesses_prompts: bool = False  # its result lists prompts tried: the suite notes an exact guess, shows a grid
    index: int = 0  # registration order (ties in report order)


def register_attack(name: str, measure: str | None = None, trained: bool = False, summary_fields: dict | None = None,
                    chart_style: str = ":", guesses_prompts: bool = False):
    """Decorator adding ``fn(ctx, **options)`` (or ``fn(ctx, key, **options)``) under ``name``; ``trained``
    attacks measure ``gain`` (over scratch), the others ``undone`` (default) or ``tolerance``; the rest are
    attributes of the spec (see ``AttackSpec``)."""
    measure = measure or ("gain" if trained else "undone")
    if measure not in MEASURES:
        raise ValueError(f"attack {name!r}: measure must be one of {', '.join(MEASURES)}, not {measure!r}")
    if trained != (measure == "gain"):
        raise ValueError(f"attack {name!r}: an attack measures its gain over scratch exactly when it is trained")

    def wrap(fn):
        params = list(inspect.signature(fn).parameters)
        if not params or params[0] != "ctx":
            raise TypeError(f"attack {name!r}: the first parameter must be 'ctx'")
        reads_key = "key" in params
        if reads_key and params[1] != "key":
            raise TypeError(f"attack {name!r}: 'key' must come right after 'ctx'")
        summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        ATTACKS.add(name, AttackSpec(name, fn, reads_key, summary, measure, trained, dict(summary_fields or {}),
                                     chart_style, guesses_prompts, len(ATTACKS._entries)), same=lambda s: s.fn)
        fn.attack_name = name
        return fn

    return wrap


def available_attacks() -> list[str]:
    """Registered attack names in report order (``REPORT_ORDER``, then any registered elsewhere)."""
    return ATTACKS.names()


def attack_spec(name: str) -> AttackSpec:
    return ATTACKS.get(name)


def run_attack(name: str, ctx, key=None, **options) -> dict:
    """Run attack ``name``; ``key`` reaches it only when its function declares a ``key`` parameter."""
    spec = attack_spec(name)
    if spec.reads_key:
        if key is None:
            raise ModelLockError(f"attack {name!r} measures near misses of the true key; it needs --key")
        return spec.fn(ctx, key, **options)
    return spec.fn(ctx, **options)


__all__ = ["ATTACKS", "AttackSpec", "register_attack", "available_attacks", "attack_spec", "run_attack"]
