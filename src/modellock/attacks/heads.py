"""Classifier heads of the attacked model: find one, replace it with a fresh one, or cut it off."""

from __future__ import annotations

import copy

from torch import nn

from ..errors import ModelLockError


def head_name(model: nn.Module, num_outputs: int) -> str:
    """The classifier module's dotted name: timm's ``pretrained_cfg['classifier']``, else the last Linear with
    ``num_outputs`` outputs."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    name = cfg.get("classifier")
    if isinstance(name, (list, tuple)):
        name = name[0] if name else None
    modules = dict(model.named_modules())
    if name and isinstance(modules.get(name), nn.Linear):
        return name
    linear = [n for n, m in modules.items() if isinstance(m, nn.Linear) and m.out_features == num_outputs]
    if not linear:
        raise ModelLockError(f"cannot find the classifier head (a Linear layer with {num_outputs} outputs) "
                             f"in {type(model).__name__}")
    return linear[-1]


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)


def with_fresh_head(model: nn.Module, num_outputs: int, new_outputs: int) -> nn.Module:
    """A copy of ``model`` whose head is a freshly initialised Linear with ``new_outputs`` outputs."""
    model = copy.deepcopy(model)
    name = head_name(model, num_outputs)
    old = model.get_submodule(name)
    _set(model, name, nn.Linear(old.in_features, new_outputs).to(old.weight.device))
    return model


def without_head(model: nn.Module, num_outputs: int) -> tuple[nn.Module, int]:
    """A copy of ``model`` that outputs the head's input features, and their width."""
    model = copy.deepcopy(model)
    name = head_name(model, num_outputs)
    width = model.get_submodule(name).in_features
    _set(model, name, nn.Identity())
    return model, width
