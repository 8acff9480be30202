"""The weights test (white box only): does the suspect carry the locked network's weights?

Fine-tuning, pruning and quantisation move a network's weights little from where they start: a copy of the
locked network keeps filters that point the same way as the owner's, layer by layer, where a model trained from
another start has filters of arbitrary order and direction. The evidence stores a *sketch* of the opened
weights, not the weights: each layer's filters (rows of its flattened weight) projected on ``DIMS`` random
directions drawn from a seed kept in the record. The sketch cannot be inverted into a network (``DIMS``
numbers per filter of hundreds or thousands). The statistic is the mean, over the layers found in the
suspect with the owner's shapes and in the owner's order, of the cosine between the owner's and the suspect's
projected filters at the same positions. The output layer is left out (a thief replaces it).

What it cannot see: a student trained from scratch (distillation), and a re-parameterised copy (channels
permuted, layers fused): the output methods do not depend on the weights' layout.
"""

from __future__ import annotations

import numpy as np
import torch

DIMS = 16


def layers(model: torch.nn.Module) -> list[tuple[str, np.ndarray]]:
    """The weights of a network's convolution and linear layers, in order, as ``out x fan_in`` arrays, without
    the last one (the output layer). Quantised layers (packed weights) are not among them."""
    found = [(name, p.detach().float().cpu().flatten(1).numpy()) for name, p in model.state_dict().items()
             if name.endswith("weight") and torch.is_tensor(p) and p.dim() in (2, 4) and p.is_floating_point()]
    return found[:-1] if len(found) > 1 else []


def _directions(seed: int, index: int, fan_in: int) -> np.ndarray:
    return np.random.default_rng([seed, index]).standard_normal((fan_in, DIMS))


def sketch(model: torch.nn.Module, seed: int) -> list[np.ndarray]:
    """The owner's sketch: per layer, its filters projected on ``DIMS`` seeded random directions."""
    return [(w @ _directions(seed, i, w.shape[1])).astype(np.float32) for i, (_, w) in enumerate(layers(model))]


def similarity(owner_sketch: list[np.ndarray], shapes: list[tuple[int, int]], seed: int,
               model: torch.nn.Module) -> float | None:
    """The mean filter cosine between the owner's sketch and ``model``'s layers of the same shapes, matched in
    order (a subsequence: layers added before or between, e.g. an input adapter, are skipped); None when fewer
    than half of the owner's layers are found."""
    theirs = layers(model)
    sims, j = [], 0
    for i, (shape, ours) in enumerate(zip(shapes, owner_sketch)):
        while j < len(theirs) and tuple(theirs[j][1].shape) != tuple(shape):
            j += 1
        if j == len(theirs):
            break
        projected = theirs[j][1] @ _directions(seed, i, shape[1])
        num = (projected * ours).sum(1)
        den = np.linalg.norm(projected, axis=1) * np.linalg.norm(ours, axis=1)
        sims.append(float(np.mean(num / np.where(den > 0, den, 1.0))))
        j += 1
    if len(sims) < max(1, len(shapes) / 2):
        return None
    return float(np.mean(sims))
