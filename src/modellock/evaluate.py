"""Evaluation: the lock matrix of a model on a test split.

original model on clean data | locked model on clean data | locked model on key-edited data |
locked model under wrong keys. Predictions of the locked output count as wrong; for models with a
locked output the accuracy with that output ignored (the thief's first move) is reported as well.
"""

from __future__ import annotations

import torch

from .data.sources import ImageSource, Split
from .edit import cache_dir, edit_split
from .editors import resolve_key
from .lockset import ImageListDataset
from .model_folder import LockedModel
from .prompts import STYLE_PROMPTS
from .train import predict_logits


def default_wrong_keys(key) -> dict:
    """The same prompt with the next seed, and two other built-in prompts."""
    others = [p for p in STYLE_PROMPTS if p != key.prompt][:2]
    wrong = {f"seed {key.seed + 1}": key.replace(seed=key.seed + 1)}
    wrong.update({f"prompt {p!r}": key.replace(prompt=p) for p in others})
    return wrong


def accuracy(logits: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None) -> float:
    """Top-1 accuracy; with ``num_classes`` the argmax runs over the first ``num_classes`` outputs only."""
    if num_classes is not None:
        logits = logits[:, :num_classes]
    return float((logits.argmax(dim=1) == labels).float().mean()) if len(labels) else float("nan")


def split_logits(model: LockedModel, split: Split, key=None, source: ImageSource | None = None,
                 batch_size: int = 256, device: str | None = None, progress: bool = True) -> torch.Tensor:
    """Logits of ``model`` on ``split``: clean, or edited with ``key`` through the edit cache."""
    if key is None:
        loaders = [lambda s=s: split.load(s) for s in split.samples]
    else:
        key = resolve_key(key, model.model, model.image_size)
        folder = cache_dir(key, source)
        edits = edit_split(key, split, folder, device=device, progress=progress, source=source).folder
        loaders = [lambda s=s: edits.load(split.name, s) for s in split.samples]
    return predict_logits(model.model, ImageListDataset(loaders, model.transform(train=False)), batch_size)


def evaluate(model: LockedModel, key, source: ImageSource, split: str = "test", baseline: LockedModel | None = None,
             wrong_keys: dict | None = None, batch_size: int = 256, device: str | None = None,
             progress: bool = True) -> dict:
    """The evaluation matrix as a JSON-able dict (see the README for its fields)."""
    data = source.split(split)
    labels = torch.tensor([s.label for s in data.samples])
    c = model.config["num_classes"]
    has_locked = model.locked_class is not None
    counts = torch.bincount(labels, minlength=c)
    result = {"task": model.config.get("task", "classification"), "metric": "accuracy",
              "chance": float(counts.max() / max(len(labels), 1)), "n_test": len(labels)}
    run = dict(source=source, batch_size=batch_size, device=device, progress=progress)
    if baseline is not None:
        result["original_clean"] = accuracy(split_logits(baseline, data, **run), labels)
    clean = split_logits(model, data, **run)
    result["locked_clean"] = accuracy(clean, labels)
    if has_locked:
        result["locked_clean_without_locked_class"] = accuracy(clean, labels, c)
        result["locked_class_rate_clean"] = float((clean.argmax(1) == model.locked_class).float().mean())
    result["unlocked"] = accuracy(split_logits(model, data, key, **run), labels)
    wrong_keys = default_wrong_keys(key) if wrong_keys is None else wrong_keys
    result["wrong_keys"], ignored = {}, {}
    for name, wk in wrong_keys.items():
        logits = split_logits(model, data, wk, **run)  # bypasses the fingerprint check on purpose
        result["wrong_keys"][name] = accuracy(logits, labels)
        ignored[name] = accuracy(logits, labels, c)
    if has_locked:
        result["wrong_keys_without_locked_class"] = ignored
    return result
