"""Attack 0: ignore the locked output, then re-fit the linear head on the attacker's clean fraction.

The cheapest moves of a thief: (a) take the argmax over the real classes only (config.json names the
locked output), and (b) keep the locked model's features and fit a new linear classifier on them
with a little clean labelled data. (b) applies to every recipe, locked output or not.
"""

from __future__ import annotations

import torch

from . import register_attack
from .context import percent
from .heads import without_head


def fit_linear_head(features: torch.Tensor, targets: torch.Tensor, num_classes: int, task, steps: int = 300,
                    seed: int = 0) -> torch.nn.Module:
    """A linear classifier on standardised features, trained full-batch with AdamW (a few ms on a CPU)."""
    gen = torch.Generator().manual_seed(seed)
    mean, std = features.mean(0, keepdim=True), features.std(0, keepdim=True).clamp_min(1e-6)
    head = torch.nn.Linear(features.shape[1], num_classes)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=gen) * 0.01)
        head.bias.zero_()
    opt = torch.optim.AdamW(head.parameters(), lr=0.01, weight_decay=1e-3)
    x = (features - mean) / std
    for _ in range(steps):
        opt.zero_grad()
        task.loss(head(x), targets).backward()
        opt.step()
    return torch.nn.Sequential(_Standardise(mean, std), head).eval()


class _Standardise(torch.nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x):
        return (x - self.mean) / self.std


@register_attack("ignore-locked-class")
def ignore_locked_class(ctx, view=None) -> dict:
    """Argmax over the real classes only, and a linear head re-fitted on the attacker's clean fraction.

    ``view`` (tests only) replaces every image the attack sees by ``view(images)``.
    """
    has_locked = ctx.model.locked_class is not None
    clean = ctx.outputs(ctx.test, fn=view) if view is not None else ctx.clean_outputs()
    result = {"has_locked_class": has_locked, "argmax_real_classes": ctx.score(clean)}
    trunk, _ = without_head(ctx.model.model, ctx.num_outputs)
    test_features = ctx.outputs(ctx.test, fn=view, model=trunk)
    refit = {}
    for fraction in ctx.fractions:
        split = ctx.attacker_split(fraction)

        def compute(split=split):
            features = ctx.outputs(split, fn=view, model=trunk)
            head = fit_linear_head(features, ctx.targets(split), ctx.num_classes, ctx.task, seed=ctx.seed)
            with torch.no_grad():
                return {"score": ctx.score(head(test_features)), "n_images": len(split)}

        # with an injected view the score is not the thief's: never store it
        refit[f"{fraction:g}"] = (compute() if view is not None
                                  else ctx.memo("refit-head", {"fraction": fraction}, compute))
    result["refit_head"] = refit
    options = [("locked output ignored" if has_locked else "argmax (no locked output)", result["argmax_real_classes"])]
    options += [(f"linear head re-fitted on {percent(float(f))} clean ({r['n_images']} images)", r["score"])
                for f, r in refit.items()]
    best = max(options, key=lambda o: o[1])
    result.update(best=best[1], best_setting=best[0], scores=dict(options))
    return result
