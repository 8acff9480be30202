"""Attack: distil a student from the locked model's outputs (model stealing), against training from scratch.

The thief queries the locked model with their unlabelled clean images and with versions of them that might
unlock it partly (generic transforms, edits with guessed prompts under the key's editor and settings), and
trains a student of the same architecture from scratch on the answers over the real classes (the locked
output dropped): ``soft`` (the probabilities) or ``top-1`` (the winning class; segmentation: per pixel),
together with the thief's labelled share and its true labels. Each query budget (1k / 10k queries in the
``full`` budget) is one set of query images; every query is one model call.

``gain`` = best student - best from-scratch model on the labelled share alone (``modellock.attacks.scratch``,
shared with the other trained attacks): what the locked model's answers are worth.
The student trains with the scratch grid's best optimizer and learning rate.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import ConcatDataset

from ..data.image_list import ImageListDataset
from ..editors import get_editor, resolve_key
from ..train import predict_logits
from . import register_attack
from .context import percent
from .generic_transforms import TRANSFORMS
from .grid import _spec, cell_name
from .prompt_catalogue import catalogue_prompts
from .scratch import scratch_baseline

KINDS = ("clean", "generic transform", "guessed prompt")


def query_images(ctx, n: int, seed: int) -> tuple[list[np.ndarray], list[str], list[int]]:
    """``n`` query images from the training split: a third clean, a third through a random generic
    transform, a third edited with a random catalogue prompt (the key's editor and settings); with each
    image's kind and the index of its source image in the training split."""
    pool = ctx.train_data
    rng = np.random.default_rng([seed, n])
    order = rng.permutation(len(pool))
    picks = [order[i % len(order)] for i in range(n)]
    kinds = [KINDS[i % 3] for i in range(n)]
    images = ctx.images(pool)
    names = list(TRANSFORMS)
    prompts = [p for _, p in catalogue_prompts()]
    out: list[np.ndarray | None] = [None] * n
    by_prompt: dict[str, list[int]] = {}
    for i, (j, kind) in enumerate(zip(picks, kinds)):
        if kind == "clean":
            out[i] = images[j]
        elif kind == "generic transform":
            out[i] = TRANSFORMS[names[rng.integers(len(names))]](images[j], rng)
        else:
            by_prompt.setdefault(prompts[rng.integers(len(prompts))], []).append(i)

    for prompt, idx in by_prompt.items():
        key = resolve_key(ctx.machinery.key(prompt), ctx.model.model, ctx.model.image_size)
        edited = get_editor(key, device=ctx.device).edit([images[picks[i]] for i in idx])
        for i, e in zip(idx, edited):
            out[i] = e
    return out, kinds, picks


def _labelled_targets(ctx, split, soft: bool):
    """The labelled share's true targets in the form the student's teacher targets take."""
    targets = ctx.targets(split)
    if soft and ctx.task.soft_distillation:  # one-hot rows beside the teacher's probabilities
        return torch.nn.functional.one_hot(targets, ctx.num_classes).float()
    return targets


def _student_score(ctx, queries, teacher, split, soft: bool, optimizer: str, lr: float, desc: str) -> float:
    transform = ctx.model.transform(train=True)
    target = ctx.task.distillation_target(teacher, ctx.num_classes, soft)
    if ctx.task.per_pixel:  # teacher masks at each image's own size, then the joint transform
        target = [torch.nn.functional.interpolate(t[None, None].float(), size=q.shape[:2], mode="nearest")[0, 0]
                  .long() for t, q in zip(target, queries)]
    data = ConcatDataset([ctx.task.training_pairs(queries, target, transform),
                          ctx.task.training_pairs(ctx.images(split), _labelled_targets(ctx, split, soft), transform)])
    loss = None if ctx.task.per_pixel else ctx.task.distillation_loss

    def make():
        return ctx.task.model_from_spec(_spec(ctx))

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.seed)
        model = make()
    model = ctx.train(model, data, desc, lr=lr, optimizer=optimizer, loss_fn=loss)
    return ctx.score(ctx.outputs(ctx.test, model=model))


@register_attack("distillation", trained=True, summary_fields={"gain": "distillation_gain"})
def distillation(ctx, queries=None, fraction: float | None = None, soft_targets=(True, False), view=None) -> dict:
    """A student trained on the locked model's answers for clean, transformed and guessed-prompt queries,
    plus the labelled share, vs. training from scratch on the labelled share alone.

    ``queries`` overrides the budget's query counts; ``fraction`` the labelled share (default: the largest).
    ``view`` (tests only) replaces what the teacher sees of the queries by ``view(images)``; its scores are
    never stored.
    """
    fraction = float(fraction or max(ctx.fractions))
    split = ctx.attacker_split(fraction)
    label = percent(fraction)
    scratch = scratch_baseline(ctx, fraction)
    cells = ctx.budget.grid(("whole",))
    optimizer, factor = next(((o, f) for o, f, p in cells if cell_name(o, ctx.lr * f, p) == scratch["best_cell"]),
                             cells[0][:2])
    rows, teacher_scores = [], {}
    for n in queries or ctx.budget.queries:
        images, kinds, picks = query_images(ctx, int(n), ctx.seed)
        teacher = teacher_outputs(ctx, view(images) if view is not None else images)
        teacher_scores[str(n)] = _teacher_scores(ctx, teacher, kinds, picks)
        for soft in soft_targets:
            if soft and not ctx.task.soft_distillation:
                continue
            mode = "soft" if soft else "top-1"
            def student(soft=soft, mode=mode):
                return _student_score(ctx, images, teacher, split, soft, optimizer, ctx.lr * factor,
                                      f"distil student ({mode}, {n} queries)")

            score = student() if view is not None else ctx.memo(
                "distillation", {"fraction": fraction, "queries": int(n), "mode": mode, "optimizer": optimizer,
                                 "lr_cell": ctx.lr * factor}, student)
            rows.append({"queries": int(n), "targets": mode, "fraction": fraction, "n_images": len(split),
                         "score": score, "scratch": scratch["best"], "gain": score - scratch["best"]})
    best = max(rows, key=lambda r: r["score"])
    return {
        "best": best["score"],
        "best_setting": f"{best['queries']} queries, {best['targets']} targets + {label} labelled "
                        f"({len(split)} images); scratch {scratch['best']:.4f}, gain {best['gain']:+.4f}",
        "gain": best["gain"],
        "gain_fraction": fraction,
        "gain_setting": f"{best['queries']} queries, {best['targets']} targets + {label} labelled "
                        f"({len(split)} images)",
        "fraction": fraction,
        "n_labelled": len(split),
        "scratch": scratch["best"],
        "scratch_cell": scratch["best_cell"],
        "student_cell": cell_name(optimizer, ctx.lr * factor, "whole"),
        "students": rows,
        "teacher_score_by_query_kind": teacher_scores,
    }


def teacher_outputs(ctx, images: list[np.ndarray]) -> torch.Tensor:
    """The locked model's outputs for ``images`` (one query each)."""
    data = ImageListDataset([lambda a=a: a for a in images], ctx.model.inference_transform())
    return predict_logits(ctx.model.model, data, ctx.batch_size)


def _teacher_scores(ctx, teacher: torch.Tensor, kinds: list[str], picks: list[int]) -> dict:
    """How right the teacher's answers are, per query kind (a diagnostic: the thief has no labels for them)."""
    samples = ctx.train_data.samples
    out = {}
    for kind in KINDS:
        idx = [i for i, k in enumerate(kinds) if k == kind]
        if idx:
            targets = ctx.task.targets(ctx.train_data, [samples[picks[i]] for i in idx])
            out[kind] = ctx.task.score(teacher[idx], targets, ctx.num_classes, True, ctx.model.ignore_index)
    return out
