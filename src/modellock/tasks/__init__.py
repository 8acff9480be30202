"""Task types: everything classification and segmentation do differently, in one place.

Lock, evaluate, the attacks, ``compare``, the predictors and the service ask ``task_type(name)`` (or
``task_for(config)`` for a model folder) for what differs between tasks: the model factory, the
transforms, the lock-set dataset and loss, the targets and score of a split, an attacker's training
pairs and loss, and the evaluation of a split. Keys, editors, the edit cache, the training loop and the
model folder are the same for every task. A task type is one class registered with ``@register_task``.

Model outputs are ``N x K x ...`` tensors whose dim 1 indexes the model's outputs (classes, then the
locked output when the model has one); slicing dim 1 to the real classes drops the locked output.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ModelLockError

_TASKS: dict[str, "TaskType"] = {}


def register_task(cls):
    """Class decorator: register one instance of a TaskType subclass under ``cls.name``."""
    if cls.name in _TASKS and type(_TASKS[cls.name]) is not cls:
        raise ValueError(f"task {cls.name!r} is already registered")
    _TASKS[cls.name] = cls()
    return cls


def task_names() -> list[str]:
    return sorted(_TASKS)


def task_type(name: str | None) -> "TaskType":
    """The task type called ``name`` (``classification`` when None)."""
    name = name or "classification"
    if name not in _TASKS:
        raise ModelLockError(f"unknown task {name!r} (known: {', '.join(task_names())})")
    return _TASKS[name]


def task_for(config: dict) -> "TaskType":
    """The task of a model folder's config (``classification`` when the config names none)."""
    return task_type(config.get("task"))


class TaskType(ABC):
    """What a task provides to the shared stages (see the module docstring)."""

    name: str = ""
    metric: str = ""
    default_model: str = ""

    # ------------------------------------------------------------------ models
    @abstractmethod
    def resolve_model(self, name: str) -> tuple[str, str]:
        """``(source, arch)`` of a model name; ModelLockError when unknown."""

    @abstractmethod
    def create_model(self, name: str, num_outputs: int, image_size: int, pretrained=None) -> torch.nn.Module:
        """A fresh (or pretrained) model carrying ``model.backbone_spec``."""

    @abstractmethod
    def model_from_spec(self, spec: dict, pretrained=None) -> torch.nn.Module:
        """The model a ``backbone_spec`` describes (with ``spec['num_classes']`` outputs)."""

    @abstractmethod
    def default_image_size(self, name: str) -> int:
        """The model's native input size."""

    # ------------------------------------------------------------------ data and training
    @abstractmethod
    def transform(self, image_size: int, train: bool, augment: bool = True, mean=None, std=None,
                  ignore_index: int = 255):
        """Training/evaluation transform of one item (classification: image; segmentation: image and mask)."""

    @abstractmethod
    def inference_transform(self, image_size: int, mean=None, std=None):
        """Image alone -> input tensor, for predictors."""

    @abstractmethod
    def inference_short_side(self, image_size: int) -> int:
        """The short side the inference transform shrinks an image to: predictors shrink large inputs to it
        before editing, so that no stage works on a full-size photo."""

    @abstractmethod
    def lock_dataset(self, items, split, edits, transform, decoys=()) -> Dataset:
        """The lock set as ``(input, target)`` items (see lockset.py)."""

    @abstractmethod
    def lock_loss(self, num_classes: int, recipe=None, ignore_index: int = 255) -> torch.nn.Module:
        """The loss the lock trains with (see losses.py)."""

    # ------------------------------------------------------------------ scores (evaluation, attacks, compare)
    @abstractmethod
    def targets(self, split, samples=None) -> list:
        """The targets of ``samples`` (default: the whole split), in order: labels or masks."""

    @abstractmethod
    def score(self, outputs: torch.Tensor, targets, num_classes: int, ignore_locked: bool = True,
              ignore_index: int = 255) -> float:
        """The task's metric over ``num_classes`` real classes. ``ignore_locked``: the argmax runs over the real
        classes only (the thief drops the locked output); else a locked-output answer counts as wrong."""

    @abstractmethod
    def chance(self, targets, num_classes: int, ignore_index: int = 255) -> float:
        """The score of always answering the most frequent class."""

    @abstractmethod
    def train_loss(self, outputs: torch.Tensor, targets, ignore_index: int = 255) -> torch.Tensor:
        """The plain training loss of an attacker's model (outputs already restricted to the real classes)."""

    @abstractmethod
    def training_pairs(self, images: list[np.ndarray], targets, transform) -> Dataset:
        """``(input, target)`` pairs for training, ``transform`` applied to each image (and its target)."""

    @abstractmethod
    def evaluate_split(self, model, split, loaders: list, batch_size: int = 256, progress: bool = True) -> dict:
        """Scores of a model folder's model on ``split`` whose images come from ``loaders`` (clean or edited):
        ``score`` (locked output counts as wrong) and, for a model with a locked output, ``ignored`` (the
        score with it dropped) and ``locked_rate``; tasks add their own fields."""

    # ------------------------------------------------------------------ distillation (model stealing)
    def distillation_target(self, outputs: torch.Tensor, num_classes: int, soft: bool) -> torch.Tensor:
        """What a student learns from the teacher's ``outputs`` over the real classes: probabilities
        (``soft``) or the top-1 class, per item (classification) or per pixel (segmentation)."""
        real = outputs[:, :num_classes].float()
        return real.softmax(1) if soft else real.argmax(1)

    def distillation_loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the student's outputs to a soft (N x K x ...) or hard (N x ...) teacher target."""
        logp = torch.nn.functional.log_softmax(outputs.float(), 1)
        if target.dtype.is_floating_point:
            return -(target * logp).sum(1).mean()
        return torch.nn.functional.nll_loss(logp, target.long())


class Pairs(Dataset):
    """``(transform(image), target)``; with ``joint`` the transform takes and returns (image, target)."""

    def __init__(self, images, targets, transform, joint: bool = False):
        self.images, self.targets, self.transform, self.joint = images, targets, transform, joint

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        if self.joint:
            return self.transform(self.images[i], self.targets[i])
        return self.transform(self.images[i]), self.targets[i]


from . import classification, segmentation  # noqa: E402,F401  (register the task types)

__all__ = ["TaskType", "register_task", "task_type", "task_for", "task_names", "Pairs"]
