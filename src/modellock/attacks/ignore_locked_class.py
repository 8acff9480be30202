"""Attack 0: ignore the locked output; re-fit the linear head on the attacker's clean fraction.

The cheapest moves of a thief, two attacks: ``ignore-locked-class`` takes the argmax over the real classes
only (config.json names the locked output; it trains nothing), ``refit-head`` keeps the locked model's
features and fits a new linear classifier on them with a little clean labelled data (every recipe, locked
output or not; trained, so it reports its gain over training from scratch on the same images).
"""

from __future__ import annotations

import torch

from ..nets.heads import without_head
from . import register_attack
from .context import percent
from .scratch import over_scratch


def _pixels(features: torch.Tensor, targets, ignore_index: int, limit: int, seed: int):
    """Segmentation features ``N x C x h x w`` and masks -> ``(pixel features, pixel labels)``: masks resized
    (nearest) to the feature maps, unlabelled pixels dropped, at most ``limit`` pixels drawn at random."""
    h, w = features.shape[-2:]
    masks = torch.stack([torch.nn.functional.interpolate(torch.as_tensor(m)[None, None].float(), size=(h, w),
                                                         mode="nearest")[0, 0].long() for m in targets])
    x = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])
    y = masks.reshape(-1)
    keep = torch.nonzero(y != ignore_index).flatten()
    if len(keep) > limit:
        keep = keep[torch.randperm(len(keep), generator=torch.Generator().manual_seed(seed))[:limit]]
    return x[keep], y[keep]


def fit_linear_head(features: torch.Tensor, targets, num_classes: int, steps: int = 300, seed: int = 0,
                    ignore_index: int = 255, max_pixels: int = 200_000) -> torch.nn.Module:
    """A linear classifier on standardised features (per pixel for ``N x C x h x w`` feature maps), trained
    full-batch with AdamW (a few ms on a CPU)."""
    x, y = (features, torch.as_tensor(targets)) if features.dim() == 2 else \
        _pixels(features, targets, ignore_index, max_pixels, seed)
    gen = torch.Generator().manual_seed(seed)
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    head = torch.nn.Linear(x.shape[1], num_classes)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=gen) * 0.01)
        head.bias.zero_()
    opt = torch.optim.AdamW(head.parameters(), lr=0.01, weight_decay=1e-3)
    xs = (x - mean) / std
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(head(xs), y).backward()
        opt.step()
    return LinearProbe(mean, std, head).eval()


class LinearProbe(torch.nn.Module):
    """Standardise, then a linear layer over dim 1 (features ``N x C`` or feature maps ``N x C x h x w``)."""

    def __init__(self, mean, std, head: torch.nn.Linear):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.head = head

    def forward(self, x):
        if x.dim() == 2:
            return self.head((x - self.mean) / self.std)
        z = (x.movedim(1, -1) - self.mean) / self.std
        return self.head(z).movedim(-1, 1)


@register_attack("ignore-locked-class")
def ignore_locked_class(ctx, view=None) -> dict:
    """Argmax over the real classes only (the locked output is named in config.json).

    ``view`` (tests only) replaces every image the attack sees by ``view(images)``.
    """
    has_locked = ctx.model.locked_class is not None
    clean = ctx.outputs(ctx.test, fn=view) if view is not None else ctx.clean_outputs()
    score = ctx.score(clean)
    setting = "locked output ignored" if has_locked else "argmax (no locked output)"
    return {"has_locked_class": has_locked, "argmax_real_classes": score, "best": score, "best_setting": setting,
            "scores": {setting: score}}


@register_attack("refit-head", trained=True)
def refit_head(ctx, view=None) -> dict:
    """A linear head re-fitted on the locked model's features with the thief's clean fraction.

    ``view`` (tests only) replaces every image the attack sees by ``view(images)``; its scores are never stored.
    """
    trunk, _ = without_head(ctx.model.model, ctx.num_outputs)
    test_features = ctx.outputs(ctx.test, fn=view, model=trunk)
    rows = []
    for fraction in ctx.fractions:
        split = ctx.attacker_split(fraction)

        def compute(split=split):
            features = ctx.outputs(split, fn=view, model=trunk)
            head = fit_linear_head(features, ctx.targets(split), ctx.num_classes, seed=ctx.seed,
                                   ignore_index=ctx.model.ignore_index)
            with torch.no_grad():
                return {"score": ctx.score(head(test_features)), "n_images": len(split)}

        # with an injected view the score is not the thief's: never store it
        r = compute() if view is not None else ctx.memo("refit-head", {"fraction": fraction}, compute)
        rows.append({"fraction": fraction, **r})
    best = max(rows, key=lambda r: r["score"])
    gain = over_scratch(ctx, rows)
    return {"best": best["score"],
            "best_setting": f"linear head re-fitted on {percent(best['fraction'])} clean ({best['n_images']} images)",
            "curve": rows, **gain,
            "scores": {f"refit-head {percent(r['fraction'])}": r["score"] for r in rows}
            | {f"scratch {percent(r['fraction'])}": r["scratch"] for r in rows}}
