"""What an attack needs to know about a task: targets, the score, a training loss and training pairs.

Attacks never compute accuracy themselves: they ask the model's task (``config["task"]``) for it, so
that another task (segmentation: masks as targets, mIoU as the score) plugs in by registering one
class here. Outputs are ``N x K x ...`` tensors whose dim 1 indexes the model's outputs; a locked
output, when there is one, is the last and is dropped by slicing dim 1 to the real classes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data.sources import Split
from ..errors import ModelLockError

_TASKS: dict[str, type["Task"]] = {}


def register_task(name: str):
    def wrap(cls):
        cls.name = name
        _TASKS[name] = cls
        return cls

    return wrap


def task_for(config: dict) -> "Task":
    """The task of a model folder's config (``classification`` when the config names none)."""
    name = config.get("task", "classification")
    if name not in _TASKS:
        raise ModelLockError(f"attacks: task {name!r} is not supported (supported: {', '.join(sorted(_TASKS))})")
    return _TASKS[name]()


class Task(ABC):
    name: str = ""
    metric: str = ""

    @abstractmethod
    def targets(self, split: Split, samples=None) -> torch.Tensor:
        """Targets of ``samples`` (default: the whole split), in order."""

    @abstractmethod
    def score(self, outputs: torch.Tensor, targets: torch.Tensor, num_classes: int | None = None) -> float:
        """The task's metric; with ``num_classes`` only the first ``num_classes`` outputs count."""

    @abstractmethod
    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The training loss of an attacker's model (outputs already restricted to the real classes)."""

    @abstractmethod
    def training_pairs(self, images: list[np.ndarray], targets: torch.Tensor, transform) -> Dataset:
        """``(input, target)`` pairs for training, ``transform`` applied to each image (and its target)."""

    def chance(self, targets: torch.Tensor, num_classes: int) -> float:
        """The score of always answering the most frequent target."""
        counts = torch.bincount(targets.flatten(), minlength=num_classes)
        return float(counts.max() / max(targets.numel(), 1))


class _Pairs(Dataset):
    def __init__(self, images, targets, transform):
        self.images, self.targets, self.transform = images, targets, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(self.images[i]), self.targets[i]


@register_task("classification")
class Classification(Task):
    metric = "accuracy"

    def targets(self, split: Split, samples=None) -> torch.Tensor:
        return torch.tensor([s.label for s in (split.samples if samples is None else samples)], dtype=torch.long)

    def score(self, outputs, targets, num_classes=None) -> float:
        from ..evaluate import accuracy

        return accuracy(outputs, targets, num_classes)

    def loss(self, outputs, targets):
        return torch.nn.functional.cross_entropy(outputs, targets)

    def training_pairs(self, images, targets, transform) -> Dataset:
        return _Pairs(images, targets, transform)
