"""The thief's training grid shared by the trained attacks and the from-scratch yardstick: build a model, freeze
all but a part, train with one optimizer and learning rate, score on the test split; every cell of a grid, and the
best."""

from __future__ import annotations

import torch

from ..errors import ModelLockError
from ..nets.heads import PartlyFrozen, head_name, set_trainable, without_head
from ..tasks import Pairs


def _spec(ctx) -> dict:
    return {**ctx.model.config["architecture"], "num_classes": ctx.num_classes}


def cell_name(optimizer: str, lr: float, part: str) -> str:
    return f"{part}, {optimizer} lr {lr:.0e}"


def train_and_score(ctx, make_model, split, desc: str, optimizer: str = "adamw", lr: float | None = None,
                    part: str = "whole") -> float:
    """Build (seeded), freeze all but ``part``, train on ``split`` and score on the test split.

    Classification "head only" trains the head on the frozen trunk's features, computed once (a linear probe
    on fixed features: the same model, far cheaper than running the trunk for every sample)."""
    with torch.random.fork_rng(devices=[]):  # the fresh weights depend on the seed only
        torch.manual_seed(ctx.seed)
        model = make_model()
    if part == "head" and ctx.task.head_probe:
        return _probe_and_score(ctx, model, split, desc, optimizer, lr)
    frozen = set_trainable(model, part, ctx.num_classes)
    model = ctx.train(PartlyFrozen(model, frozen), split, desc, lr=lr, optimizer=optimizer).model
    return ctx.score(ctx.outputs(ctx.test, model=model))


def _probe_and_score(ctx, model, split, desc: str, optimizer: str, lr: float) -> float:
    """Train ``model``'s (fresh) head on the trunk's features of ``split`` (cached per model and split)."""
    trunk, _ = without_head(model, ctx.num_classes)
    ident = ("features", float(next(trunk.parameters()).detach().double().sum()), split.name, len(split),
             tuple(s.id for s in split.samples[:3]))
    if ident not in ctx._cache:  # the trunk is the locked model's whatever the head: one pass per split
        ctx._cache[ident] = (ctx.outputs(split, model=trunk), ctx.outputs(ctx.test, model=trunk))
    train_features, test_features = ctx._cache[ident]
    head = model.get_submodule(head_name(model, ctx.num_classes))
    pairs = Pairs(list(train_features), ctx.targets(split), lambda f: f)
    head = ctx.train(head, pairs, desc, lr=lr, optimizer=optimizer)
    with torch.no_grad():
        return ctx.score(head(test_features))


def _grid_row(ctx, kind: str, make_model, split, label: str, cells, extra: dict) -> dict:
    """Every cell's test score (None for a cell whose training diverged), and the best cell."""
    scores = {}
    for optimizer, factor, part in cells:
        lr = ctx.lr * factor
        name = cell_name(optimizer, lr, part)

        def compute(name=name, optimizer=optimizer, lr=lr, part=part):
            try:
                return train_and_score(ctx, make_model, split, f"{kind} {name} on {label}", optimizer, lr, part)
            except ModelLockError as e:  # the loss became nan/inf: the thief gets nothing from this cell
                if "loss became" not in str(e):
                    raise
                return None

        scores[name] = ctx.memo(kind, {**extra, "optimizer": optimizer, "lr_cell": lr, "part": part}, compute)
    finite = {n: v for n, v in scores.items() if v is not None}
    if not finite:
        return {"best": ctx.task_chance(), "best_cell": "every cell diverged (chance)", "grid": scores}
    best = max(finite, key=finite.get)
    return {"best": finite[best], "best_cell": best, "grid": scores}
