"""Attack 5: learn an input adapter in front of the frozen locked model.

A small image-to-image network maps the (normalised) clean input to whatever the locked model
accepts; only the adapter trains, on the attacker's clean fraction, against the real-class outputs
(the locked output, if any, is left out of the loss). The adapter is a full 3x3 convolution (a colour
mix with a local filter, started at the identity) plus a small non-linear residual branch started at
zero, so it begins as "no adapter" and can express any colour-and-texture key edit of that size.
"""

from __future__ import annotations

import torch
from torch import nn

from . import register_attack
from .context import percent


class InputAdapter(nn.Module):
    """x -> conv3x3(x) + residual(x); the conv starts as the identity, the residual at zero."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.linear = nn.Conv2d(3, 3, 3, padding=1)
        self.residual = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width, 3, 1),
        )
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.bias.zero_()
            for c in range(3):
                self.linear.weight[c, c, 1, 1] = 1.0
            self.residual[-1].weight.zero_()
            self.residual[-1].bias.zero_()

    def forward(self, x):
        return self.linear(x) + self.residual(x)


class AdaptedModel(nn.Module):
    """adapter -> frozen model (kept in eval mode: its normalisation statistics never move)."""

    def __init__(self, adapter: nn.Module, model: nn.Module):
        super().__init__()
        self.adapter, self.model = adapter, model
        for p in self.model.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True):
        self.training = mode
        self.adapter.train(mode)
        self.model.eval()
        return self

    def forward(self, x):
        return self.model(self.adapter(x))


@register_attack("input-adapter")
def input_adapter(ctx, fractions=None, width: int = 16, lr: float = 3e-3) -> dict:
    """A small image-to-image net in front of the frozen locked model, trained on the clean fraction.

    ``fractions`` overrides the context's (tests use 1.0).
    """
    import copy

    rows = []
    for fraction in fractions or ctx.fractions:
        split = ctx.attacker_split(fraction)

        def compute(split=split, fraction=fraction):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(ctx.seed)
                adapter = InputAdapter(width)
            model = AdaptedModel(adapter, copy.deepcopy(ctx.model.model))
            model = ctx.train(model, split, f"input adapter on {percent(fraction)}", lr=lr, outputs=ctx.num_classes)
            return ctx.score(ctx.outputs(ctx.test, model=model))

        rows.append({"fraction": fraction, "n_images": len(split),
                     "score": ctx.memo("input-adapter", {"fraction": fraction, "width": width, "adapter_lr": lr},
                                       compute)})
    best = max(rows, key=lambda r: r["score"])
    return {"best": best["score"], "best_setting": f"{percent(best['fraction'])} clean ({best['n_images']} images)",
            "curve": rows, "scores": {f"adapter {percent(r['fraction'])}": r["score"] for r in rows}}
