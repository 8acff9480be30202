"""Task types: everything classification and segmentation do differently, in one place.

Lock, evaluate, the attacks, ``compare``, the predictors and the service ask ``task_type(name)`` (or
``task_for(config)`` for a model folder) for what differs between tasks: the model factory, the
transforms, the lock-set dataset and loss, the targets and score of a split, an attacker's training
pairs and loss, the evaluation of a split, and what the ownership evidence asks (the image a model sees, targets
and answers as class distributions, the images it gets most wrong). Keys, editors, the edit cache, the training
loop and the model folder are the same for every task. A task type is one class registered with ``@register_task``.

Model outputs are ``N x K x ...`` tensors whose dim 1 indexes the model's outputs (classes, then the
locked output when the model has one); slicing dim 1 to the real classes drops the locked output.
"""

from __future__ import annotations

from ..utils.registry import Registry
from .base import LockDataset, LockItem, Pairs, TaskType

# a task type is one folder here: ``tasks/<name>/__init__.py`` registers it (``base`` holds the shared parts)
TASKS = Registry("task", package=__name__, helpers=("base",), group="tasks")


def register_task(cls):
    """Class decorator: register one instance of a TaskType subclass under ``cls.name``."""
    TASKS.add(cls.name, cls(), same=type)
    return cls


def task_names() -> list[str]:
    return TASKS.names()


def task_type(name: str | None) -> "TaskType":
    """The task type called ``name`` (``classification`` when None)."""
    return TASKS.get(name or "classification")


def task_for(config: dict) -> "TaskType":
    """The task of a model folder's config (``classification`` when the config names none)."""
    return task_type(config.get("task"))


__all__ = ["TaskType", "LockItem", "LockDataset", "Pairs", "TASKS", "register_task", "task_type", "task_for",
           "task_names"]
