"""Attack 4: fine-tune the stolen model on a little clean labelled data, against not having stolen it.

For each clean fraction the thief holds (default 1 %, 5 %, 10 % of the training split), three models
train on the same images with the same budget and learning rate (the one the model was locked with):

- ``attack``: the locked model with a fresh head (every weight trained);
- ``scratch``: the same architecture from random initialisation;
- ``pretrained``: the same architecture from the pretrained start the lock recorded, when there is one
  and it can be loaded here.

``gain`` = attack - scratch (and ``gain_over_pretrained``): what stealing the locked weights is worth.
The lock holds when the gain is about zero. Each trained score is memoised under the work folder.
"""

from __future__ import annotations

import torch

from ..backbones import backbone_from_spec
from ..errors import ModelLockError
from . import register_attack
from .context import percent
from .heads import with_fresh_head


def _spec(ctx) -> dict:
    return {**ctx.model.config["architecture"], "num_classes": ctx.num_classes}


def train_and_score(ctx, make_model, split, desc: str) -> float:
    with torch.random.fork_rng(devices=[]):  # the fresh weights depend on the seed only
        torch.manual_seed(ctx.seed)
        model = make_model()
    model = ctx.train(model, split, desc)
    return ctx.score(ctx.outputs(ctx.test, model=model))


@register_attack("fine-tune")
def fine_tune(ctx, fractions=None) -> dict:
    """Fine-tune the locked model (fresh head) on the attacker's clean fraction vs. training from scratch.

    ``fractions`` overrides the context's (tests use 1.0: the thief holds all the training data).
    """
    pretrained = (ctx.model.config.get("training") or {}).get("pretrained")
    rows, notes = [], []
    for fraction in fractions or ctx.fractions:
        split = ctx.attacker_split(fraction)
        label = percent(fraction)
        row = {"fraction": fraction, "n_images": len(split)}
        row["attack"] = ctx.memo("fine-tune", {"fraction": fraction}, lambda: train_and_score(
            ctx, lambda: with_fresh_head(ctx.model.model, ctx.num_outputs, ctx.num_classes), split,
            f"fine-tune locked model on {label}"))
        row["scratch"] = ctx.memo("scratch", {"fraction": fraction}, lambda: train_and_score(
            ctx, lambda: backbone_from_spec(_spec(ctx)), split, f"train from scratch on {label}"))
        row["gain"] = row["attack"] - row["scratch"]
        if pretrained:
            try:
                row["pretrained"] = ctx.memo("pretrained", {"fraction": fraction, "start": pretrained},
                                             lambda: train_and_score(
                                                 ctx, lambda: backbone_from_spec(_spec(ctx), pretrained), split,
                                                 f"train from the pretrained start on {label}"))
                row["gain_over_pretrained"] = row["attack"] - row["pretrained"]
            except ModelLockError as e:
                notes.append(f"pretrained start not loadable here: {e}")
                pretrained = None
        rows.append(row)
    best = max(rows, key=lambda r: r["attack"])
    return {
        "best": best["attack"],
        "best_setting": f"{percent(best['fraction'])} clean ({best['n_images']} images); "
                        f"scratch {best['scratch']:.4f}, "
                        f"gain {best['gain']:+.4f}",
        "curve": rows,
        "pretrained_start": pretrained is not None,
        "notes": notes,
        "budget": ctx.budget,
        "lr": ctx.lr,
        "scores": {f"attack {percent(r['fraction'])}": r["attack"] for r in rows}
        | {f"scratch {percent(r['fraction'])}": r["scratch"] for r in rows},
    }
