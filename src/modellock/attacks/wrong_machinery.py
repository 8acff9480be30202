"""Attack 3: the right prompt with the wrong machinery. Reads the key, on purpose.

The true prompt with another seed, other step counts, other guidance scales, another blend ``alpha``,
another edit resolution, other editor settings, every other registered editor, and every other
diffusion model the attacker holds (``--diffusion-model``). Variants are named relative to the key
("seed +1", "alpha -0.25") so the report does not spell out the key's settings.

What a thief without the prompt could also try (another seed, another editor, another diffusion model) is
the attack's ``best``; variants of the key's own public settings (steps, guidance, alpha, resolution,
editor settings) are the key's ``tolerance``: how exactly an authorised user must reproduce the settings,
reported on its own and not counted as an attack.

A variant whose edit of a few probe images is identical to the key's (a setting this editor ignores,
e.g. the step count of ``keyed-filter``) is not wrong machinery: it is listed under ``no_effect`` and
left out of ``best``.
"""

from __future__ import annotations

import numpy as np

from ..editors import available_editors, editor_class, get_editor, resolve_key
from ..errors import ModelLockError
from ..keys import PAPER_DEFAULTS, Key
from . import register_attack
from .context import Candidate

PROBE_IMAGES = 4


def _setting_variants(key: Key) -> list[tuple[str, dict]]:
    """``(name, changes)`` of the key's own editor."""
    out: list[tuple[str, dict]] = [("seed +1", {"seed": key.seed + 1}), ("seed +7", {"seed": key.seed + 7}),
                                   ("seed 0" if key.seed else "seed 1", {"seed": 0 if key.seed else 1}),
                                   ("seed random", {"seed": int(np.random.default_rng(key.seed).integers(2**31))})]
    for name, steps in (("steps -1", key.steps - 1), ("steps +1", key.steps + 1), ("steps x2", key.steps * 2),
                        ("steps /2", key.steps // 2)):
        if steps >= 1 and steps != key.steps:
            out.append((name, {"steps": steps}))
    for factor in (0.5, 0.8, 1.25, 2.0):
        out.append((f"guidance x{factor:g}", {"guidance": key.guidance * factor}))
        out.append((f"image guidance x{factor:g}", {"image_guidance": key.image_guidance * factor}))
    for delta in (-0.25, -0.1, 0.1, 0.25):
        alpha = round(key.alpha + delta, 4)
        if 0.0 < alpha <= 1.0:
            out.append((f"alpha {delta:+g}", {"alpha": alpha}))
    if key.alpha < 1.0:
        out.append(("alpha 1 (no blend)", {"alpha": 1.0}))
    if key.resolution:
        out += [("resolution /2", {"resolution": max(8, key.resolution // 2)}),
                ("resolution x2", {"resolution": key.resolution * 2}), ("native resolution", {"resolution": 0})]
    else:
        out += [("resolution 64", {"resolution": 64}), ("resolution 256", {"resolution": 256})]
    for name, value in sorted(key.params.items()):  # editor settings the key sets (their defaults are unknown)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, int):
            values = [(f"{name} -1", value - 1), (f"{name} +1", value + 1), (f"{name} x2", value * 2),
                      (f"{name} /2", value // 2)]
        else:
            values = [(f"{name} x{f:g}", value * f) for f in (0.5, 0.8, 1.25)]
        out += [(label, {"params": {**key.params, name: v}}) for label, v in values if v != value]
    return out


def _other_machinery(ctx, key: Key) -> tuple[list[tuple[str, Key]], list[dict]]:
    """Other editors and diffusion models with the true prompt; the skipped ones with the reason."""
    keys, skipped = [], []
    for i, model in enumerate(m for m in ctx.diffusion_models if m != key.model):
        if key.model:
            keys.append((f"diffusion model #{i + 1}", key.replace(model=str(model))))
    for editor in available_editors():
        if editor == key.editor:
            continue
        defaults = {**PAPER_DEFAULTS, **editor_class(editor).key_defaults}
        models = [defaults["model"]] if not defaults["model"] else [str(m) for m in ctx.diffusion_models]
        if not models:
            skipped.append({"name": f"editor {editor}", "reason": "needs a diffusion model; none given "
                            "(--diffusion-model)"})
        for j, model in enumerate(models):
            fields = {**defaults, "model": model, "editor": editor}
            name = f"editor {editor}" + (f", diffusion model #{j + 1}" if model else "")
            keys.append((name, Key(prompt=key.prompt, **fields)))
    return keys, skipped


def _same_edit(ctx, a: Key, b: Key, probes: list[np.ndarray]) -> bool:
    model, size = ctx.model.model, ctx.model.image_size
    ea = get_editor(resolve_key(a, model, size), device=ctx.device).edit(probes)
    eb = get_editor(resolve_key(b, model, size), device=ctx.device).edit(probes)
    return all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(ea, eb))


@register_attack("wrong-machinery")
def wrong_machinery(ctx, key, variants: list[tuple[str, dict]] | None = None, exclude_key: bool = True) -> dict:
    """The true prompt with another seed, steps, guidance, alpha, resolution, editor or diffusion model.

    ``variants`` (tests) replaces the ``(name, Key.replace changes)`` list of the key's own editor;
    ``exclude_key=False`` keeps variants whose edit equals the key's.
    """
    changes = _setting_variants(key) if variants is None else variants
    named: list[tuple[str, Key]] = []
    invalid = []
    for name, change in changes:
        try:
            named.append((name, key.replace(**change)))
        except ModelLockError as e:
            invalid.append({"name": name, "error": str(e)})
    others, skipped = _other_machinery(ctx, key) if variants is None else ([], [])
    named += others
    probes = ctx.images(ctx.screen_split)[:PROBE_IMAGES]
    candidates, no_effect = [], []
    for name, k in named:
        if exclude_key and k.editor == key.editor:
            try:
                if _same_edit(ctx, key, k, probes):
                    no_effect.append(name)
                    continue
            except ModelLockError as e:
                invalid.append({"name": name, "error": str(e)})
                continue
        kind = ("other editor" if k.editor != key.editor else "diffusion model" if k.model != key.model
                else "seed" if k.replace(seed=key.seed) == key else "setting")
        candidates.append(Candidate(name, key=k, info={"kind": kind}))
    thief = [c for c in candidates if c.info["kind"] != "setting"]
    result = ctx.sweep(thief, "wrong machinery") if thief else {"best": None, "best_setting": None, "candidates": [],
                                                                  "failed": []}
    tolerance = ctx.sweep([c for c in candidates if c.info["kind"] == "setting"], "key tolerance")
    result["failed"] = result["failed"] + tolerance.pop("failed") + invalid
    result.update(no_effect=no_effect, skipped=skipped, tolerance=tolerance,
                  scores={row["name"]: row["screen_score"] for row in result["candidates"] + tolerance["candidates"]})
    return result
