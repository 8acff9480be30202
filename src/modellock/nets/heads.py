"""Output layers of a model (classifier Linear, or the conv(s) giving segmentation maps), and the parts an
attacker (or the lock's simulated attacker) trains: the head only, the last blocks with it, or everything.

A model names its output layer(s) the way timm does, in ``model.pretrained_cfg['classifier']`` (a dotted
name or a list of them); without one, the last Linear (or 1x1-able Conv2d) with the model's output count.
"""

from __future__ import annotations

import copy

from torch import nn

from ..errors import ModelLockError

PARTS = ("whole", "last", "head")
LAST_SHARE = 1 / 3  # "last": the trailing parameterised layers holding at least this share of the trunk


def head_names(model: nn.Module, num_outputs: int) -> list[str]:
    """Dotted names of the module(s) producing the outputs."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    names = cfg.get("classifier")
    names = [names] if isinstance(names, str) else list(names or [])
    modules = dict(model.named_modules())
    found = [n for n in names if isinstance(modules.get(n), (nn.Linear, nn.Conv2d))]
    if found:
        return found
    layers = [n for n, m in modules.items() if (isinstance(m, nn.Linear) and m.out_features == num_outputs)
              or (isinstance(m, nn.Conv2d) and m.out_channels == num_outputs)]
    if not layers:
        raise ModelLockError(f"cannot find the output layer (a Linear or Conv2d with {num_outputs} outputs) "
                             f"in {type(model).__name__}")
    return layers[-1:]


def head_name(model: nn.Module, num_outputs: int) -> str:
    """The (first) output module's dotted name."""
    return head_names(model, num_outputs)[0]


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)


def _fresh_like(old: nn.Module, outputs: int) -> nn.Module:
    if isinstance(old, nn.Linear):
        new = nn.Linear(old.in_features, outputs, bias=old.bias is not None)
    else:
        new = nn.Conv2d(old.in_channels, outputs, old.kernel_size, old.stride, old.padding, old.dilation,
                        old.groups if old.groups == 1 else 1, bias=old.bias is not None)
    return new.to(old.weight.device)


def with_fresh_head(model: nn.Module, num_outputs: int, new_outputs: int) -> nn.Module:
    """A copy of ``model`` whose output layer(s) are freshly initialised with ``new_outputs`` outputs."""
    model = copy.deepcopy(model)
    for name in head_names(model, num_outputs):
        _set(model, name, _fresh_like(model.get_submodule(name), new_outputs))
    return model


def without_head(model: nn.Module, num_outputs: int) -> tuple[nn.Module, int]:
    """A copy of ``model`` that outputs the head's input features, and their width (one output layer only)."""
    names = head_names(model, num_outputs)
    if len(names) != 1:
        raise ModelLockError(f"{type(model).__name__} has {len(names)} output layers; its features are not one tensor")
    model = copy.deepcopy(model)
    old = model.get_submodule(names[0])
    width = old.in_features if isinstance(old, nn.Linear) else old.in_channels
    _set(model, names[0], nn.Identity())
    return model, width


def set_trainable(model: nn.Module, part: str, num_outputs: int) -> list[nn.Module]:
    """Freeze all but ``part`` (``whole``, ``last``: the trailing layers holding a third of the trunk's
    parameters plus the head, ``head``) of ``model``; return the frozen leaf modules (to keep in eval mode)."""
    if part not in PARTS:
        raise ModelLockError(f"trainable part must be one of {', '.join(PARTS)}, not {part!r}")
    heads = head_names(model, num_outputs)
    for p in model.parameters():
        p.requires_grad_(part == "whole")
    if part == "whole":
        return []
    trainable = set(heads)
    if part == "last":
        leaves = [(n, m) for n, m in model.named_modules()
                  if not any(n == h or n.startswith(h + ".") for h in heads)
                  and any(True for _ in m.parameters(recurse=False))]
        total = sum(p.numel() for _, m in leaves for p in m.parameters(recurse=False))
        kept = 0
        for n, m in reversed(leaves):
            if kept >= LAST_SHARE * total:
                break
            trainable.add(n)
            kept += sum(p.numel() for p in m.parameters(recurse=False))
    frozen = []
    for n, m in model.named_modules():
        inside = any(n == t or n.startswith(t + ".") for t in trainable)
        if inside:
            for p in m.parameters(recurse=False):
                p.requires_grad_(True)
        elif any(True for _ in m.parameters(recurse=False)) or isinstance(m, nn.modules.batchnorm._BatchNorm):
            frozen.append(m)
    return frozen


class PartlyFrozen(nn.Module):
    """``model`` whose frozen layers stay in eval mode while it trains (their normalisation statistics fixed)."""

    def __init__(self, model: nn.Module, frozen: list[nn.Module]):
        super().__init__()
        self.model, self._frozen = model, frozen

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self._frozen:
            m.eval()
        return self

    def forward(self, x):
        return self.model(x)
