"""Attack 4: fine-tune the stolen model on a little clean labelled data, against not having stolen it.

Durability claims of fine-tuning defences collapse when the attacker varies the learning rate, optimizer
and what is trained (Qi et al., arXiv 2412.07097), so the thief here searches a grid. For each clean
fraction the thief holds (default 1 %, 5 %, 10 % of the training split) and each cell of the budget's
grid (optimizer x learning rate x trainable part: the whole model, the last blocks with the head, the head
only), with the same number of training samples per cell:

- ``attack``: the locked model with a fresh head;
- ``scratch``: the same architecture from random initialisation, over the same optimizers and learning
  rates (its "head only" and "last blocks" cells would train a random trunk: left out);
- ``pretrained``: the same, from the pretrained start the lock recorded, when it can be loaded here.

``gain`` = best attack cell - best scratch cell (``modellock.attacks.scratch``, shared with the other
trained attacks): what stealing the locked weights is worth. Both sides pick their best cell on the whole
test split (optimistic for both; the attack has more cells, so the comparison leans toward the thief).
The lock holds when the gain is at most zero. Each trained score is memoised under the work folder.
"""

from __future__ import annotations

from ..errors import ModelLockError
from ..nets.heads import with_fresh_head
from . import register_attack
from .context import percent
from .grid import _grid_row, _spec
from .scratch import scratch_baseline


@register_attack("fine-tune", trained=True, chart_style="-",
                 summary_fields={"gain": "fine_tune_gain", "gain_fraction": "fine_tune_gain_fraction"})
def fine_tune(ctx, fractions=None) -> dict:
    """Fine-tune the locked model (fresh head) over an optimizer x lr x part grid vs. training from scratch.

    ``fractions`` overrides the context's (tests use 1.0: the thief holds all the training data).
    """
    pretrained = (ctx.model.config.get("training") or {}).get("pretrained")
    task = ctx.task
    rows, notes = [], []
    for fraction in fractions or ctx.fractions:
        split = ctx.attacker_split(fraction)
        label = percent(fraction)
        extra = {"fraction": fraction}
        attack = _grid_row(ctx, "fine-tune", lambda: with_fresh_head(ctx.model.model, ctx.num_outputs, ctx.num_classes),
                           split, label, ctx.budget.grid(), extra)
        scratch = scratch_baseline(ctx, fraction)
        row = {"fraction": fraction, "n_images": len(split), "attack": attack["best"],
               "attack_cell": attack["best_cell"], "scratch": scratch["best"], "scratch_cell": scratch["best_cell"],
               "gain": attack["best"] - scratch["best"], "attack_grid": attack["grid"], "scratch_grid": scratch["grid"]}
        if pretrained:
            try:
                start = _grid_row(ctx, "pretrained", lambda: task.model_from_spec(_spec(ctx), pretrained), split,
                                  label, ctx.budget.grid(("whole",)), {**extra, "start": pretrained})
                row.update(pretrained=start["best"], pretrained_cell=start["best_cell"],
                           pretrained_grid=start["grid"], gain_over_pretrained=attack["best"] - start["best"])
            except ModelLockError as e:
                notes.append(f"pretrained start not loadable here: {e}")
                pretrained = None
        rows.append(row)
    best = max(rows, key=lambda r: r["attack"])
    worst_gain = max(rows, key=lambda r: r["gain"])
    return {
        "best": best["attack"],
        "best_setting": f"{percent(best['fraction'])} clean ({best['n_images']} images), {best['attack_cell']}; "
                        f"scratch {best['scratch']:.4f}, gain {best['gain']:+.4f}",
        "gain": worst_gain["gain"],
        "gain_fraction": worst_gain["fraction"],
        "scratch": worst_gain["scratch"],
        "gain_setting": f"{percent(worst_gain['fraction'])} clean ({worst_gain['n_images']} images), "
                        f"{worst_gain['attack_cell']}",
        "curve": rows,
        "pretrained_start": pretrained is not None,
        "notes": notes,
        "budget": ctx.budget.name,
        "samples": ctx.samples,
        "lr": ctx.lr,
        "scores": {f"attack {percent(r['fraction'])}": r["attack"] for r in rows}
        | {f"scratch {percent(r['fraction'])}": r["scratch"] for r in rows},
    }
