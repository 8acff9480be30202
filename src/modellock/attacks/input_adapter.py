"""Attack 5: learn an input adapter in front of the frozen locked model (a "disguise" network, JailNTL).

Only the adapter trains, on the attacker's clean fraction, against the real-class outputs (the locked
output, if any, is left out of the loss). Three adapters, each its own attack:

- ``input-adapter``: a full 3x3 convolution (colour mix and local filter, started at the identity) plus a
  small non-linear residual branch started at zero: a colour-and-texture edit of that size;
- ``unet-adapter``: a U-Net (about 0.5M parameters, three scales) added to its input, started at zero
  (the identity): a spatially varying, multi-scale edit;
- ``editor-family-adapter``: the key editor's own parameter family made differentiable (the thief knows the
  code), started from random keys and fitted by gradient; editors without such a family are skipped.
"""

from __future__ import annotations

import copy

import torch

from ..editors import editor_class
from ..nets.adapters import AdaptedModel, InputAdapter, PixelSpace, UNetAdapter
from . import register_attack
from .context import percent
from .scratch import over_scratch


def fit_adapter(ctx, make_adapter, split, desc: str, lr: float) -> float:
    """Train ``make_adapter()`` (seeded) in front of a frozen copy of the locked model; the test score."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.seed)
        adapter = make_adapter()
    model = AdaptedModel(adapter, copy.deepcopy(ctx.model.model))
    model = ctx.train(model, split, desc, lr=lr, outputs=ctx.num_classes)
    return ctx.score(ctx.outputs(ctx.test, model=model))


def _per_fraction(ctx, kind: str, make_adapter, lr: float, params: dict, fractions) -> dict:
    rows = []
    for fraction in fractions or ctx.fractions:
        split = ctx.attacker_split(fraction)
        score = ctx.memo(kind, {"fraction": fraction, "adapter_lr": lr, **params},
                         lambda split=split, fraction=fraction: fit_adapter(
                             ctx, make_adapter, split, f"{kind} on {percent(fraction)}", lr))
        rows.append({"fraction": fraction, "n_images": len(split), "score": score})
    best = max(rows, key=lambda r: r["score"])
    return {"best": best["score"], "best_setting": f"{percent(best['fraction'])} clean ({best['n_images']} images)",
            "curve": rows, "lr": lr, "scores": {f"{kind} {percent(r['fraction'])}": r["score"] for r in rows}}


def _with_gain(ctx, run: dict) -> dict:
    """``run`` with its gain over scratch per fraction (see ``modellock.attacks.scratch``)."""
    gain = over_scratch(ctx, run["curve"])
    run["scores"].update({f"scratch {percent(r['fraction'])}": r["scratch"] for r in run["curve"]})
    return {**run, **gain}


@register_attack("input-adapter", trained=True)
def input_adapter(ctx, fractions=None, width: int = 16, lr: float = 3e-3) -> dict:
    """A small image-to-image net (3x3 colour-and-filter + small residual) in front of the frozen model.

    ``fractions`` overrides the context's (tests use 1.0).
    """
    r = _per_fraction(ctx, "input-adapter", lambda: InputAdapter(width), lr, {"width": width}, fractions)
    return {**_with_gain(ctx, r), "parameters": sum(p.numel() for p in InputAdapter(width).parameters())}


@register_attack("unet-adapter", trained=True)
def unet_adapter(ctx, fractions=None, widths=(32, 64, 128), lr: float = 1e-3) -> dict:
    """A U-Net adapter (multi-scale, ~0.5M parameters, started at the identity) in front of the frozen model."""
    r = _per_fraction(ctx, "unet-adapter", lambda: UNetAdapter(widths), lr, {"widths": list(widths)}, fractions)
    return {**_with_gain(ctx, r), "parameters": sum(p.numel() for p in UNetAdapter(widths).parameters())}


@register_attack("editor-family-adapter", trained=True)
def editor_family_adapter(ctx, fractions=None, restarts: int | None = None, lr: float = 3e-2) -> dict:
    """The key editor's own parameter family, fitted by gradient through the frozen model from random keys.

    ``restarts`` random starts (default 3 in the ``full`` budget, 1 in ``quick``); the best one counts.
    """
    cls = editor_class(ctx.machinery.editor)
    if cls.attack_family(ctx.machinery.key("probe")) is None:
        return {"best": None, "skipped": f"editor {ctx.machinery.editor!r} declares no differentiable family"}
    restarts = restarts or (3 if ctx.budget.name == "full" else 1)
    p = ctx.model.config["preprocessing"]
    runs = []
    for r in range(restarts):
        def make(r=r):
            return PixelSpace(cls.attack_family(ctx.machinery.key(f"random start {ctx.seed}.{r}")),
                              p["mean"], p["std"])

        run = _per_fraction(ctx, "editor-family-adapter", make, lr,
                            {"editor": ctx.machinery.editor, "start": r}, fractions)
        runs.append(run)
    best = max(runs, key=lambda run: run["best"])
    curve = [max((run["curve"][i] for run in runs), key=lambda row: row["score"]) for i in range(len(best["curve"]))]
    best = {**best, "curve": [dict(row) for row in curve],
            "scores": {f"editor-family-adapter {percent(r['fraction'])}": r["score"] for r in curve}}
    return {**_with_gain(ctx, best), "restarts": restarts,
            "runs": [run["curve"] for run in runs],
            "parameters": sum(q.numel() for q in cls.attack_family(ctx.machinery.key("probe")).parameters())}
